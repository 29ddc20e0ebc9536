/*
 * models.h -- the table of served models: the built-ins "layernorm" and
 * "rmsnorm" (any N, no affine, eps 1e-5) followed by the configured ones.
 * Built once in main before any thread starts; read-only afterwards, so
 * any thread may look models up without locks.
 */
#pragma once

#include <stddef.h>

#include "../config/config.h"
#include "../core/geometry.h"
#include "../core/ln.h"
#include "../proto/oip.h"

typedef struct model {
    char name[CONFIG_NAME_MAX];
    ln_params params; /* params.n == dim; 0 for any-N models (set per request) */
    oip_model_info info;
    float *gain; /* owned, [dim] or NULL */
    float *bias; /* owned, [dim] or NULL */
    /* layernorm with dim > 0: the region its outputs lie in, per group,
     * solved once at load (core/geometry.h); NULL otherwise */
    geometry **geo;
    /* layernorm with a fixed dim and groups of 2 or more: each group's
     * info.max_axes (K) longest principal axes ([groups * K * dim/groups],
     * unit, group by group) and their semi-axis lengths ([groups * K]),
     * for the per-row axes output; NULL otherwise */
    double *axes;
    double *semi_axes;
    /* 1 / gain in double ([dim]) for the plane_residual output, when the
     * model has one and a gain; NULL otherwise */
    double *inv_gain;
    /* ln_plane_consts ([2 * groups]) for the fused plane residual, when
     * the model has one and a fixed dim; NULL otherwise (dim 0 models have
     * neither gain nor bias, so the kernels need none, core/ln.h) */
    double *plane_c;
} model;

typedef struct model_table {
    model *models;
    size_t n;
} model_table;

/* Builds the table from the config (copies gain and bias, solves each
 * layernorm model's geometry). 0, or -1 with the reason in err
 * (CONFIG_ERR_MAX bytes). */
int models_init(model_table *t, const config *c, char *err);

void models_fini(model_table *t);

/* The model named name[0..len), or NULL. */
const model *models_find(const model_table *t, const char *name, size_t len);
