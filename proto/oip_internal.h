/*
 * oip_internal.h -- proto/oip.c internals that tests/test_proto.c reaches:
 * the choice between the two infer decoders, so the test can run both on
 * one document and demand the same answer. Not part of the interface.
 */
#pragma once

#include "oip.h"

/*
 * oip_decode_infer with the decoder chosen: force_full = 0 tries the fast
 * path first (what oip_decode_infer does), 1 runs only the full jansson
 * decode. *used_fast (may be NULL) says whether the fast path produced the
 * answer. Both give the same status, message and bits for every body.
 */
lns_status oip__decode_infer_path(const char *body, size_t len, size_t json_len,
                                  const oip_model_info *m, oip_request *req, char *err,
                                  int force_full, int *used_fast);
