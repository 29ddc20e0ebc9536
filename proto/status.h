/*
 * status.h -- the one table of project status codes. Every fallible
 * function in proto/, config/ and server/ returns 0 (LNS_OK) or one of
 * these; lns_status_http() maps each to the HTTP status and
 * lns_status_wire() to the binary protocol's status (proto/frame.md), from
 * one table, so the HTTP front and the binary front agree. Detail for the
 * user travels in an out-parameter message, never in a global.
 */
#pragma once

typedef enum lns_status {
    LNS_OK = 0,
    LNS_EBADREQ,     /* 400: malformed or invalid input */
    LNS_ENOTFOUND,   /* 404: unknown model or path */
    LNS_EMETHOD,     /* 405: method not allowed on this path */
    LNS_ETOOLARGE,   /* 413: body over max_body_bytes */
    LNS_EBUSY,       /* 503: queue full, retry later */
    LNS_ESHUTDOWN,   /* 503: server draining */
    LNS_ENOMEM,      /* 500: allocation failed */
    LNS_EINTERNAL,   /* 500: a bug */
    LNS_ENOTIMPL,    /* 501: a protocol feature lnserve does not implement */
    LNS_STATUS_COUNT
} lns_status;

/* HTTP status code for s (200 for LNS_OK). */
int lns_status_http(lns_status s);

/* Short stable name, e.g. "bad_request". */
const char *lns_status_name(lns_status s);

/* The binary protocol's status code for s (0 for LNS_OK; proto/frame.md). */
int lns_status_wire(lns_status s);

/* The status a wire code stands for; LNS_EINTERNAL for an unknown code. */
lns_status lns_status_from_wire(unsigned code);
