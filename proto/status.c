#include "status.h"

/* wire: the binary protocol's status code (proto/frame.md section 5).
 * Wire codes are part of that protocol: never renumber one, only add. */
static const struct {
    int http;
    int wire;
    const char *name;
} status_table[LNS_STATUS_COUNT] = {
    [LNS_OK] = {200, 0, "ok"},
    [LNS_EBADREQ] = {400, 1, "bad_request"},
    [LNS_ENOTFOUND] = {404, 2, "not_found"},
    [LNS_EMETHOD] = {405, 3, "method_not_allowed"},
    [LNS_ETOOLARGE] = {413, 4, "payload_too_large"},
    [LNS_EBUSY] = {503, 5, "busy"},
    [LNS_ESHUTDOWN] = {503, 6, "shutting_down"},
    [LNS_ENOMEM] = {500, 7, "out_of_memory"},
    [LNS_EINTERNAL] = {500, 8, "internal"},
    [LNS_ENOTIMPL] = {501, 9, "not_implemented"},
};

int lns_status_http(lns_status s)
{
    if ((unsigned)s >= LNS_STATUS_COUNT)
        return 500;
    return status_table[s].http;
}

const char *lns_status_name(lns_status s)
{
    if ((unsigned)s >= LNS_STATUS_COUNT)
        return "internal";
    return status_table[s].name;
}

int lns_status_wire(lns_status s)
{
    if ((unsigned)s >= LNS_STATUS_COUNT)
        return status_table[LNS_EINTERNAL].wire;
    return status_table[s].wire;
}

lns_status lns_status_from_wire(unsigned code)
{
    for (int s = 0; s < LNS_STATUS_COUNT; s++)
        if ((unsigned)status_table[s].wire == code)
            return (lns_status)s;
    return LNS_EINTERNAL;
}
