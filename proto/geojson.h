/*
 * geojson.h -- the JSON document of GET /v2/models/{m}/geometry: where a
 * model's outputs can lie (../shared/MATH.md section 3), per group.
 *
 * Pure function; jansson; any thread. Non-finite numbers (the log-volume
 * of a flat region, the axis ratio with a zero axis) are written as null,
 * since JSON has no infinity.
 */
#pragma once

#include <stddef.h>

#include "../core/geometry.h"
#include "oip.h"

/* One group's region, as the server knows it. */
typedef struct geojson_group {
    const geometry *geo; /* layernorm with a fixed dim: the solved geometry */
    const float *gain;   /* rmsnorm: the group's gains (NULL = all 1) */
    const double *axes;  /* [k * n] principal axes, or NULL */
    size_t k;            /* number of axes in axes */
} geojson_group;

/*
 * The document: {"name", "kind", "dim", "groups", "group_dim", "region",
 * "per_group": [...]} where each group has, for layernorm, the hyperplane
 * normal, the N-1 semi-axis lengths (descending), log_volume, axis_ratio,
 * the solver's residual and trace_error, counts of zero gains and
 * deflated eigenvalues, and "axes" when requested; for rmsnorm the N
 * semi-axes sqrt(n) |g_i| along the coordinate axes and no hyperplane.
 * A model of any N (dim 0) gets the closed form in words and numbers for
 * its unit gain. malloc'd, NUL-terminated; NULL on allocation failure.
 */
char *geojson_encode(const oip_model_info *m, const geojson_group *groups);
