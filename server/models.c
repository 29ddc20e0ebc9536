#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/diag.h"

/* Most axes a request may ask coordinates along (parameters.axes). */
#define MODEL_MAX_AXES 16

static float *copy_floats(const float *src, size_t n)
{
    if (!src)
        return NULL;
    float *dst = malloc(n * sizeof(float));
    if (dst)
        memcpy(dst, src, n * sizeof(float));
    return dst;
}

static int model_set(model *m, const char *name, ln_kind kind, size_t dim,
                     size_t groups, float eps, const float *gain,
                     const float *bias, const config *c, char *err)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof m->name, "%s", name);
    m->gain = copy_floats(gain, dim);
    m->bias = copy_floats(bias, dim);
    if ((gain && !m->gain) || (bias && !m->bias)) {
        snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory", name);
        return -1;
    }
    m->params = (ln_params){.kind = kind, .n = dim, .groups = groups,
                            .eps = eps, .gain = m->gain, .bias = m->bias};
    m->info = (oip_model_info){.name = m->name, .kind = kind, .dim = dim,
                               .groups = groups, .max_rows = c->max_rows,
                               .max_n = c->max_n};
    m->info.has_plane = kind == LN_KIND_LAYERNORM; /* built-ins: unit gain */
    if (kind != LN_KIND_LAYERNORM || dim == 0)
        return 0;
    /* Per group: LN-G's region is the product of the groups' regions. */
    size_t gs = dim / groups;
    m->geo = calloc(groups, sizeof(geometry *));
    if (!m->geo) {
        snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory", name);
        return -1;
    }
    for (size_t k = 0; k < groups; k++) {
        const char *why = NULL;
        int rc = geometry_create(m->gain ? m->gain + k * gs : NULL, gs, &m->geo[k], &why);
        if (rc) {
            snprintf(err, CONFIG_ERR_MAX, "model %s: geometry of group %zu: %s", name, k,
                     why ? why : "out of memory");
            return -1;
        }
    }
    m->info.has_plane = ln_plane_ok(&m->params);
    if (m->info.has_plane && m->gain) {
        m->inv_gain = malloc(dim * sizeof(double));
        if (!m->inv_gain) {
            snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory", name);
            return -1;
        }
        ln_plane_inv_gain(&m->params, m->inv_gain);
    }
    if (m->info.has_plane) {
        m->plane_c = malloc(2 * groups * sizeof(double));
        if (!m->plane_c) {
            snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory", name);
            return -1;
        }
        ln_plane_consts(&m->params, m->inv_gain, m->plane_c);
    }
    if (gs < 2)
        return 0;
    /* The longest axes of each group for the per-row axes output: solved
     * once here (O(gs^2) a group, core/geometry.h), never per request. The
     * same K for every group: the most that every group has with a
     * nonzero length (axes of length 0, from zero gains, have no
     * coordinate). */
    size_t k_max = gs - 1 < MODEL_MAX_AXES ? gs - 1 : MODEL_MAX_AXES;
    for (size_t k = 0; k < groups; k++)
        while (k_max > 0 && !(m->geo[k]->semi_axes[k_max - 1] > 0))
            k_max--;
    if (k_max == 0)
        return 0;
    m->axes = malloc(groups * k_max * gs * sizeof(double));
    m->semi_axes = malloc(groups * k_max * sizeof(double));
    if (!m->axes || !m->semi_axes) {
        snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory for its axes", name);
        return -1;
    }
    for (size_t k = 0; k < groups; k++) {
        if (geometry_axes(m->geo[k], k_max, m->axes + k * k_max * gs)) {
            snprintf(err, CONFIG_ERR_MAX, "model %s: out of memory for its axes", name);
            return -1;
        }
        memcpy(m->semi_axes + k * k_max, m->geo[k]->semi_axes, k_max * sizeof(double));
    }
    m->info.max_axes = k_max;
    return 0;
}

int models_init(model_table *t, const config *c, char *err)
{
    t->n = 2 + c->n_models;
    t->models = calloc(t->n, sizeof(model));
    if (!t->models) {
        snprintf(err, CONFIG_ERR_MAX, "models: out of memory");
        return -1;
    }
    if (model_set(&t->models[0], "layernorm", LN_KIND_LAYERNORM, 0, 1, 1e-5f,
                  NULL, NULL, c, err) ||
        model_set(&t->models[1], "rmsnorm", LN_KIND_RMSNORM, 0, 1, 1e-5f,
                  NULL, NULL, c, err))
        goto fail;
    for (size_t i = 0; i < c->n_models; i++) {
        const config_model *cm = &c->models[i];
        if (model_set(&t->models[2 + i], cm->name, cm->kind, cm->dim,
                      cm->groups, cm->eps, cm->gain, cm->bias, c, err))
            goto fail;
    }
    return 0;
fail:
    models_fini(t);
    return -1;
}

void models_fini(model_table *t)
{
    for (size_t i = 0; i < t->n && t->models; i++) {
        model *m = &t->models[i];
        for (size_t k = 0; m->geo && k < m->params.groups; k++)
            geometry_destroy(m->geo[k]);
        free(m->geo);
        free(m->axes);
        free(m->semi_axes);
        free(m->inv_gain);
        free(m->plane_c);
        free(m->gain);
        free(m->bias);
    }
    free(t->models);
    t->models = NULL;
    t->n = 0;
}

const model *models_find(const model_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        const model *m = &t->models[i];
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
            return m;
    }
    return NULL;
}
