#include "geojson.h"

#include <jansson.h>
#include <math.h>

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *doubles(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *layernorm_group(const geojson_group *g)
{
    const geometry *geo = g->geo;
    json_t *o = json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "n",
                          (json_int_t)geo->n, "hyperplane_normal",
                          geo->normal ? doubles(geo->normal, geo->n) : json_null(),
                          "semi_axes",
                          geo->semi_axes ? doubles(geo->semi_axes, geo->n - 1) : json_array(),
                          "log_volume", num(geo->log_volume), "axis_ratio", num(geo->axis_ratio),
                          "residual", num(geo->residual), "trace_error", num(geo->trace_error),
                          "zero_gains", (json_int_t)geo->n_zero_gains, "deflated",
                          (json_int_t)geo->n_deflated);
    if (o && g->axes) {
        json_t *axes = json_array();
        for (size_t j = 0; axes && j < g->k; j++)
            json_array_append_new(axes, doubles(g->axes + j * geo->n, geo->n));
        json_object_set_new(o, "axes", axes);
    }
    return o;
}

static json_t *rmsnorm_group(const geojson_group *g, size_t n)
{
    /* |G^-1 (y - b)|^2 < n: semi-axes sqrt(n) |g_i| along the coordinates,
     * listed in feature order (they are the coordinate axes). */
    json_t *axes = json_array();
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; axes && i < n; i++) {
        double a = sqrt((double)n) * fabs(g->gain ? (double)g->gain[i] : 1.0);
        lo = a < lo ? a : lo;
        hi = a > hi ? a : hi;
        json_array_append_new(axes, json_real(a));
    }
    return json_pack("{s:I, s:n, s:o, s:s, s:o}", "n", (json_int_t)n, "hyperplane_normal",
                     "semi_axes", axes ? axes : json_null(), "semi_axes_along", "coordinates",
                     "axis_ratio", num(lo > 0 ? hi / lo : INFINITY));
}

char *geojson_encode(const oip_model_info *m, const geojson_group *groups)
{
    int ln = m->kind == LN_KIND_LAYERNORM;
    json_t *doc = json_pack(
        "{s:s, s:s, s:I, s:I, s:s}", "name", m->name, "kind", ln ? "layernorm" : "rmsnorm",
        "dim", (json_int_t)m->dim, "groups", (json_int_t)m->groups, "region",
        ln ? "per group: a hyperplane through the bias cut through an ellipsoid; "
             "outputs fill the (n-1)-dimensional ellipsoid of their intersection"
           : "per group: an n-dimensional ellipsoid around the bias, axes along the coordinates");
    if (!doc)
        return NULL;
    if (m->dim == 0) {
        json_object_set_new(
            doc, "closed_form",
            json_string(ln ? "any N, unit gain: the region is a sphere of radius sqrt(n) in the "
                             "hyperplane orthogonal to the all-ones vector; every one of the "
                             "n-1 semi-axes is sqrt(n)"
                           : "any N, unit gain: the ball of radius sqrt(n)"));
    } else {
        size_t gs = m->dim / m->groups;
        json_t *per = json_array();
        for (size_t k = 0; per && k < m->groups; k++) {
            json_t *g = ln ? layernorm_group(&groups[k]) : rmsnorm_group(&groups[k], gs);
            if (!g || json_array_append_new(per, g)) {
                json_decref(per);
                per = NULL;
            }
        }
        json_object_set_new(doc, "group_dim", json_integer((json_int_t)gs));
        json_object_set_new(doc, "per_group", per ? per : json_null());
    }
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return out;
}
