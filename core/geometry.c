/*
 * geometry.c -- eigen-structure of M = diag(g^2) - g g^T / N by deflation,
 * a secular-equation root per bracket, and a treecode for the sums.
 * Interface and contract: geometry.h. Formulas: ../shared/MATH.md sec. 3.
 *
 * Notation inside: after deflation, D[0] < D[1] < ... < D[n-1] are the
 * distinct nonzero g_i^2 (n = n_red) and W[j] = (sum of g_i^2 over the
 * block of D[j]) / N > 0 the weights, so with
 *   h(lambda) = sum_j W[j] / (D[j] - lambda),  f = 1 - h,
 * h rises from -inf to +inf on each (D[j-1], D[j]) and from 0 to +inf on
 * (-inf, D[0]): one root per gap, and one below D[0] (exactly 0 when no
 * gain is 0, since then h(0) = sum_j m_j / N = 1). Root j lies in
 * (D[j-1], D[j]) and is stored as base[j] + tau[j], base[j] the nearer
 * pole (or 0 below D[0]), so D[i] - lambda_j = (D[i] - base[j]) - tau[j]
 * is computed without cancellation: the standard device of dlaed4.
 */
#include "geometry.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Poles per treecode leaf: below this, exact sums are cheaper than series. */
#define LEAF 32
/* Series terms stored per node; enough for ratio 1/2 (see series_terms). */
#define NTERMS 57
/* Iterations per root before giving up on the model step and bisecting. */
#define MODEL_ITERS 30
#define MAX_ITERS 200

typedef struct tnode {
    size_t lo, hi;      /* poles [lo, hi) */
    size_t left, right; /* children, 0 for a leaf (the root is node 0) */
    double c, r;        /* centre and half-width of [D[lo], D[hi-1]] */
} tnode;

struct geometry_priv {
    size_t n_red;
    double *D;     /* [n_red] distinct nonzero g^2, ascending */
    double *W;     /* [n_red] block weight m_j D[j] / N */
    double *Z;     /* [n_red] |block of g| = sqrt(m_j D[j]) */
    double *base;  /* [n_red] root j = base[j] + tau[j] */
    double *tau;   /* [n_red] */
    size_t *start; /* [n_red + 1] block j is perm[start[j] .. start[j+1]) */
    size_t *perm;  /* [n - n_zero] nonzero-gain features sorted by g^2 */
    size_t *zeros; /* [n_zero] zero-gain features */
    double *g;     /* [n] the gains, in double */
};

typedef struct tree {
    tnode *node;
    size_t n_node;
    double *A; /* [n_node * NTERMS] A_p = sum W s^p, s = (D - c) / r */
    double *B; /* [n_node * NTERMS] (p + 1) A_p */
    const double *D, *W;
} tree;

/* ---- treecode ---- */

static size_t tree_count(size_t len)
{
    return len <= LEAF ? 1 : 1 + tree_count(len / 2) + tree_count(len - len / 2);
}

/*
 * Moments of a parent from one child's (M2M): with s = alpha s' + beta,
 * alpha = r'/r, beta = (c' - c)/r, A_p += sum_l C(p,l) alpha^l beta^(p-l)
 * A'_l. The child's span lies inside the parent's, so |alpha| + |beta| <= 1
 * and no term grows. Summing 2^k leaves this way keeps A_0's rounding
 * error near log2(n) eps; direct sums over a 32768-pole node were off by
 * 3e-14 relative (measured), which is what the roots then converged to.
 */
static void moments_shift(double *A, const double *Ac, double alpha, double beta)
{
    double apow[NTERMS], bpow[NTERMS], binom[NTERMS];
    int p, l;

    apow[0] = bpow[0] = 1;
    for (p = 1; p < NTERMS; p++) {
        apow[p] = apow[p - 1] * alpha;
        bpow[p] = bpow[p - 1] * beta;
    }
    binom[0] = 1; /* row p of Pascal's triangle, updated in place */
    for (p = 0; p < NTERMS; p++) {
        double acc = 0;

        if (p > 0) {
            binom[p] = 1;
            for (l = p - 1; l > 0; l--)
                binom[l] += binom[l - 1]; /* exact: C(56, 28) < 2^53 */
        }
        for (l = 0; l <= p; l++)
            acc += binom[l] * apow[l] * bpow[p - l] * Ac[l];
        A[p] += acc;
    }
}

static size_t tree_build_node(tree *t, size_t *next, size_t lo, size_t hi)
{
    size_t id = (*next)++, i, p;
    tnode *nd = &t->node[id];
    double *A = t->A + id * NTERMS, *B = t->B + id * NTERMS, c, r;

    nd->lo = lo;
    nd->hi = hi;
    c = nd->c = 0.5 * (t->D[lo] + t->D[hi - 1]);
    r = nd->r = 0.5 * (t->D[hi - 1] - t->D[lo]);
    memset(A, 0, NTERMS * sizeof *A);
    if (hi - lo <= LEAF) {
        nd->left = nd->right = 0;
        for (i = lo; i < hi; i++) {
            double s = r > 0 ? (t->D[i] - c) / r : 0.0, pw = t->W[i];

            for (p = 0; p < NTERMS; p++) {
                A[p] += pw;
                pw *= s;
            }
        }
    } else {
        size_t mid = lo + (hi - lo) / 2, ch[2];
        int k;

        /* the recursion moves t->node's entries only by index: nd stays
         * valid, but re-read through the array for clarity */
        ch[0] = tree_build_node(t, next, lo, mid);
        ch[1] = tree_build_node(t, next, mid, hi);
        t->node[id].left = ch[0];
        t->node[id].right = ch[1];
        for (k = 0; k < 2; k++) {
            const tnode *cn = &t->node[ch[k]];

            /* r > 0: the node holds >= 2 distinct poles */
            moments_shift(A, t->A + ch[k] * NTERMS, cn->r / r, (cn->c - c) / r);
        }
    }
    for (p = 0; p < NTERMS; p++)
        B[p] = (double)(p + 1) * A[p];
    return id;
}

static int tree_init(tree *t, const double *D, const double *W, size_t n)
{
    size_t next = 0;

    t->D = D;
    t->W = W;
    t->n_node = tree_count(n);
    t->node = malloc(t->n_node * sizeof *t->node);
    t->A = malloc(t->n_node * NTERMS * sizeof *t->A);
    t->B = malloc(t->n_node * NTERMS * sizeof *t->B);
    if (!t->node || !t->A || !t->B)
        return -ENOMEM;
    tree_build_node(t, &next, 0, n);
    return 0;
}

static void tree_fini(tree *t)
{
    free(t->node);
    free(t->A);
    free(t->B);
}

/*
 * Terms that bring the series' relative truncation error q^p (1+q)/(1-q)
 * (every W > 0, so no cancellation inside a node) below about 2e-17.
 */
static int series_terms(double q)
{
    if (q == 0)
        return 1;
    if (q < 1.0 / 16)
        return 14;
    if (q < 1.0 / 8)
        return 19;
    if (q < 1.0 / 4)
        return 29;
    if (q < 0.375)
        return 41;
    return NTERMS;
}

/* The sums at lambda = base + tau, split at pole k: indices <= k go to
 * psi (poles below lambda), the rest to phi. dpsi, dphi: derivatives in
 * lambda (sums of W / (D - lambda)^2, > 0). k may be -1 (all above). */
typedef struct sums {
    double psi, dpsi, phi, dphi;
} sums;

static void tree_eval(const tree *t, double base, double tau, long k, sums *out)
{
    size_t stack[128], sp = 0;
    double psi = 0, dpsi = 0, phi = 0, dphi = 0;

    stack[sp++] = 0;
    while (sp > 0) {
        const tnode *nd = &t->node[stack[--sp]];
        int below = (long)nd->hi - 1 <= k, above = (long)nd->lo > k;
        double dist = (base - nd->c) + tau;

        /* A node whose span holds lambda straddles k and is never taken
         * whole; q < 1/2 keeps the series within NTERMS. */
        if ((below || above) && nd->r < 0.5 * fabs(dist)) {
            size_t id = (size_t)(nd - t->node);
            const double *A = t->A + id * NTERMS, *B = t->B + id * NTERMS;
            double q = nd->r / dist, s0 = 0, s1 = 0, inv = 1.0 / dist;
            int p = series_terms(fabs(q));

            while (p-- > 0) {
                s0 = s0 * q + A[p];
                s1 = s1 * q + B[p];
            }
            if (below) {
                psi -= s0 * inv;
                dpsi += s1 * inv * inv;
            } else {
                phi -= s0 * inv;
                dphi += s1 * inv * inv;
            }
        } else if (nd->left == 0) {
            /* Sum each leaf on its own, then add: when no node is far
             * enough to take whole (lambda = 0 under gains spread over
             * decades) the sums are otherwise one running sum of n terms,
             * measured 1e-14 off at n = 400 where this gives 1e-16. */
            size_t i, split = k + 1 < (long)nd->lo   ? nd->lo
                              : k + 1 > (long)nd->hi ? nd->hi
                                                     : (size_t)(k + 1);
            double lp = 0, ldp = 0, lf = 0, ldf = 0;

            for (i = nd->lo; i < split; i++) {
                double inv = 1.0 / ((t->D[i] - base) - tau), term = t->W[i] * inv;

                lp += term;
                ldp += term * inv;
            }
            for (i = split; i < nd->hi; i++) {
                double inv = 1.0 / ((t->D[i] - base) - tau), term = t->W[i] * inv;

                lf += term;
                ldf += term * inv;
            }
            psi += lp;
            dpsi += ldp;
            phi += lf;
            dphi += ldf;
        } else {
            /* depth <= log2(n / LEAF) + 1 < 64, two pushes per level */
            stack[sp++] = nd->left;
            stack[sp++] = nd->right;
        }
    }
    out->psi = psi;
    out->dpsi = dpsi;
    out->phi = phi;
    out->dphi = dphi;
}

/* ---- one root ---- */

/*
 * The root of the two-pole model through the current point:
 *   psi(t) ~ a_lo + b_lo / (dlo - t), phi(t) ~ a_hi + b_hi / (dhi - t),
 * matching value and slope at tau, and 1 - psi - phi = 0 solved for t in
 * (dlo, dhi). dlo = -inf (no pole below) is passed as has_lo = 0. Returns
 * NAN when the model has no root inside (rounding); the caller bisects.
 */
static double model_root(const sums *s, double tau, int has_lo, double dlo, double dhi)
{
    double bhi = s->dphi * (dhi - tau) * (dhi - tau);
    double a = 1.0 - (s->phi - bhi / (dhi - tau));
    double blo = 0, a2, a1, a0, disc, q, r1, r2;

    if (!has_lo) {
        /* a (dhi - t) = bhi */
        return a > 0 ? dhi - bhi / a : NAN;
    }
    blo = s->dpsi * (dlo - tau) * (dlo - tau);
    a -= s->psi - blo / (dlo - tau);
    /* a (dlo - t)(dhi - t) - blo (dhi - t) - bhi (dlo - t) = 0 */
    a2 = a;
    a1 = -(a * (dlo + dhi) - blo - bhi);
    a0 = a * dlo * dhi - blo * dhi - bhi * dlo;
    if (a2 == 0)
        return a1 != 0 ? -a0 / a1 : NAN;
    disc = a1 * a1 - 4 * a2 * a0;
    if (disc < 0)
        disc = 0;
    q = -0.5 * (a1 + copysign(sqrt(disc), a1));
    r1 = q / a2;
    r2 = q != 0 ? a0 / q : r1;
    if (r1 > dlo && r1 < dhi)
        return r1;
    if (r2 > dlo && r2 < dhi)
        return r2;
    return NAN;
}

/*
 * Root j of the reduced problem: in (D[j-1], D[j]), or in (0, D[0]) for
 * j == 0 (only called then when some gain is 0). Writes base, tau and
 * the normalized residual at the returned point.
 */
static void solve_root(const tree *t, size_t j, double *base_out, double *tau_out,
                       double *resid_out)
{
    const double *D = t->D;
    long k = (long)j - 1; /* poles <= k lie below the root */
    int has_lo = j > 0;
    double base, lo, hi, tau, f, best_tau, best_res = INFINITY;
    int it;
    sums s;

    if (has_lo) {
        double gap = D[j] - D[j - 1], mid = 0.5 * gap;

        tree_eval(t, D[j - 1], mid, k, &s);
        f = 1.0 - s.psi - s.phi;
        if (f >= 0) { /* f falls: the root is in [mid, D[j]) */
            base = D[j];
            lo = mid - gap; /* exact: both are multiples of ulp(gap)/2 */
            hi = 0;
            tau = mid - gap;
        } else {
            base = D[j - 1];
            lo = 0;
            hi = mid;
            tau = mid;
        }
        if (f == 0) {
            *base_out = base;
            *tau_out = tau;
            *resid_out = 0;
            return;
        }
    } else {
        /* (0, D[0]) around the pole D[0]; f(0) = n_zero / N > 0 */
        base = D[0];
        lo = -D[0];
        hi = 0;
        tau = -0.5 * D[0];
        tree_eval(t, base, tau, k, &s);
        f = 1.0 - s.psi - s.phi;
    }
    best_tau = tau;
    for (it = 0; it < MAX_ITERS; it++) {
        double dlo = has_lo ? D[j - 1] - base : 0, dhi = D[j] - base;
        double res = fabs(f) / (1.0 + fabs(s.psi) + fabs(s.phi) + fabs(tau) * (s.dpsi + s.dphi));
        double next;

        if (res < best_res) {
            best_res = res;
            best_tau = tau;
        }
        /* f's rounding error is a few eps (1 + |psi| + |phi|); the last term
         * is f's change over one rounding of lambda = base + tau, so a root
         * between adjacent doubles passes too (dlaed4's erretm) */
        if (res <= 4 * DBL_EPSILON || f == 0)
            break;
        if (f > 0)
            lo = tau;
        else
            hi = tau;
        next = it < MODEL_ITERS ? model_root(&s, tau, has_lo, dlo, dhi) : NAN;
        if (!(next > lo && next < hi))
            next = lo + 0.5 * (hi - lo);
        if (next == tau || next <= lo || next >= hi)
            break; /* the bracket is down to adjacent doubles */
        tau = next;
        tree_eval(t, base, tau, k, &s);
        f = 1.0 - s.psi - s.phi;
    }
    *base_out = base;
    *tau_out = best_tau;
    *resid_out = best_res;
}

/* ---- deflation and assembly ---- */

typedef struct keyed {
    double d;
    size_t i;
} keyed;

/* by g^2, ties by feature index so that blocks are laid out stably */
static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;

    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void priv_free(geometry_priv *p)
{
    if (!p)
        return;
    free(p->D);
    free(p->W);
    free(p->Z);
    free(p->base);
    free(p->tau);
    free(p->start);
    free(p->perm);
    free(p->zeros);
    free(p->g);
    free(p);
}

void geometry_destroy(geometry *g)
{
    if (!g)
        return;
    free(g->eigenvalues);
    free(g->semi_axes);
    free(g->normal);
    priv_free(g->priv);
    free(g);
}

/* Neumaier's compensated sum: the trace check compares two sums of N
 * terms, and plain summation alone was off by 5e-14 at N = 65536. */
typedef struct ksum {
    double s, c;
} ksum;

static void ksum_add(ksum *k, double x)
{
    double t = k->s + x;

    k->c += fabs(k->s) >= fabs(x) ? (k->s - t) + x : (x - t) + k->s;
    k->s = t;
}

/* log of the volume of the unit k-ball */
static double log_unit_ball(double k)
{
    return 0.5 * k * log(3.14159265358979323846) - lgamma(0.5 * k + 1.0);
}

int geometry_create(const float *gain, size_t n, geometry **out, const char **why)
{
    geometry *G = NULL;
    geometry_priv *P = NULL;
    double *d2 = NULL, trace, sum, logsum = 0;
    ksum ktrace = { 0, 0 }, ksum_lam = { 0, 0 };
    keyed *key = NULL;
    size_t i, j, n_nz = 0, n_zero = 0, nr = 0, pos;
    tree t = { 0 };
    int rc = -ENOMEM;
    const char *dummy;

    if (!why)
        why = &dummy;
    *out = NULL;
    if (n == 0) {
        *why = "gain length must be > 0";
        return -EINVAL;
    }
    for (i = 0; gain && i < n; i++)
        if (!isfinite(gain[i])) {
            *why = "gain must be finite";
            return -EINVAL;
        }

    G = calloc(1, sizeof *G);
    P = calloc(1, sizeof *P);
    if (!G || !P)
        goto fail;
    G->priv = P;
    G->n = n;
    P->g = malloc(n * sizeof *P->g);
    d2 = malloc(n * sizeof *d2);
    P->perm = malloc(n * sizeof *P->perm);
    P->zeros = malloc(n * sizeof *P->zeros);
    key = malloc(n * sizeof *key);
    G->eigenvalues = malloc(n * sizeof *G->eigenvalues);
    if (!P->g || !d2 || !P->perm || !P->zeros || !key || !G->eigenvalues)
        goto fail;
    if (n > 1 && !(G->semi_axes = malloc((n - 1) * sizeof *G->semi_axes)))
        goto fail;

    /* A float squared has at most 48 significant bits: d2 is exact, so
     * equal gains (up to sign) give exactly equal poles. */
    for (i = 0; i < n; i++) {
        P->g[i] = gain ? (double)gain[i] : 1.0;
        d2[i] = P->g[i] * P->g[i];
        ksum_add(&ktrace, d2[i]);
        if (P->g[i] == 0) {
            P->zeros[n_zero++] = i;
        } else {
            key[n_nz].d = d2[i];
            key[n_nz++].i = i;
        }
    }
    trace = (ktrace.s + ktrace.c) * (1.0 - 1.0 / (double)n);
    qsort(key, n_nz, sizeof *key, cmp_keyed);
    for (i = 0; i < n_nz; i++)
        P->perm[i] = key[i].i;

    /* blocks of equal d2 */
    P->start = malloc((n_nz + 1) * sizeof *P->start);
    P->D = malloc((n_nz ? n_nz : 1) * sizeof *P->D);
    P->W = malloc((n_nz ? n_nz : 1) * sizeof *P->W);
    P->Z = malloc((n_nz ? n_nz : 1) * sizeof *P->Z);
    P->base = malloc((n_nz ? n_nz : 1) * sizeof *P->base);
    P->tau = malloc((n_nz ? n_nz : 1) * sizeof *P->tau);
    if (!P->start || !P->D || !P->W || !P->Z || !P->base || !P->tau)
        goto fail;
    for (i = 0; i < n_nz; i = j) {
        double d = d2[P->perm[i]];

        for (j = i + 1; j < n_nz && d2[P->perm[j]] == d; j++)
            ;
        P->start[nr] = i;
        P->D[nr] = d;
        P->W[nr] = (double)(j - i) * d / (double)n;
        P->Z[nr] = sqrt((double)(j - i) * d);
        nr++;
    }
    P->start[nr] = n_nz;
    P->n_red = nr;
    G->n_zero_gains = n_zero;
    G->n_secular = nr;
    G->n_deflated = n_nz - nr;

    /* secular roots */
    if (nr > 0) {
        if ((rc = tree_init(&t, P->D, P->W, nr)) != 0)
            goto fail;
        rc = -ENOMEM;
        for (j = 0; j < nr; j++) {
            double res;

            if (j == 0 && n_zero == 0) {
                sums s;

                P->base[0] = 0;
                P->tau[0] = 0; /* exactly: h(0) = 1 */
                tree_eval(&t, 0, 0, -1, &s);
                res = fabs(1.0 - s.phi) / (1.0 + fabs(s.phi));
            } else {
                solve_root(&t, j, &P->base[j], &P->tau[j], &res);
            }
            if (res > G->residual)
                G->residual = res;
        }
        tree_fini(&t);
        memset(&t, 0, sizeof t);
    }

    /* descending: D[nr-1] copies, root nr-1, ..., D[0] copies, root 0, zeros */
    pos = 0;
    for (j = nr; j-- > 0;) {
        size_t m = P->start[j + 1] - P->start[j], c;
        double lam = P->base[j] + P->tau[j];

        for (c = 1; c < m; c++)
            G->eigenvalues[pos++] = P->D[j];
        G->eigenvalues[pos++] = lam;
        ksum_add(&ksum_lam, (double)(m - 1) * P->D[j]);
        ksum_add(&ksum_lam, lam);
        logsum += (double)(m - 1) * log(P->D[j]);
        if (j > 0 || n_zero > 0) /* the hyperplane's 0 is not an axis */
            logsum += log(lam);
    }
    for (i = 0; i < n_zero; i++)
        G->eigenvalues[pos++] = 0;
    for (i = 0; i + 1 < n; i++)
        G->semi_axes[i] = sqrt((double)n * G->eigenvalues[i]);
    sum = ksum_lam.s + ksum_lam.c;
    G->trace_error = trace > 0 ? fabs(sum - trace) / trace : fabs(sum);

    if (n == 1) {
        G->log_volume = 0; /* omega_0 = 1, a point */
        G->axis_ratio = 1;
    } else if (n_zero > 0) {
        G->log_volume = -INFINITY;
        G->axis_ratio = G->semi_axes[0] > 0 ? INFINITY : 1;
    } else {
        G->log_volume = log_unit_ball((double)(n - 1)) +
                        0.5 * (double)(n - 1) * log((double)n) + 0.5 * logsum;
        G->axis_ratio = G->semi_axes[0] / G->semi_axes[n - 2];
    }

    /* unit normal G^{-1} 1, scaled by the smallest |g| against overflow */
    if (n_zero == 0) {
        double gmin = fabs(P->g[P->perm[0]]), nrm = 0;

        if (!(G->normal = malloc(n * sizeof *G->normal)))
            goto fail;
        for (i = 0; i < n; i++) {
            G->normal[i] = gmin / P->g[i];
            nrm += G->normal[i] * G->normal[i];
        }
        nrm = sqrt(nrm);
        for (i = 0; i < n; i++)
            G->normal[i] /= nrm;
    }
    free(d2);
    free(key);
    *out = G;
    return 0;

fail:
    tree_fini(&t);
    free(d2);
    free(key);
    geometry_destroy(G);
    if (!G)
        free(P);
    *why = "out of memory";
    return rc;
}

/* ---- eigenvectors ---- */

/*
 * Gu-Eisenstat: the rank-one vector zhat for which the computed roots are
 * the exact eigenvalues of D - zhat zhat^T / N,
 *   zhat_i^2 = -N prod_j (lambda_j - D_i) / prod_{j != i} (D_j - D_i),
 * with factors paired so that each ratio is >= 1 and the small ones
 * (lambda_i, lambda_{i+1} next to D_i) are taken apart. Every
 * lambda_j - D_i is (base_j - D_i) + tau_j: no cancellation.
 */
static void gu_eisenstat(const geometry_priv *P, double N, double *zhat)
{
    size_t n = P->n_red, i, j;
    const double *D = P->D;

    for (i = 0; i < n; i++) {
        double prod = 1, head;

        for (j = 0; j < i; j++)
            prod *= ((P->base[j] - D[i]) + P->tau[j]) / (D[j] - D[i]);
        for (j = i + 2; j < n; j++)
            prod *= ((P->base[j] - D[i]) + P->tau[j]) / (D[j - 1] - D[i]);
        head = -N * ((P->base[i] - D[i]) + P->tau[i]);
        if (i + 1 < n)
            head *= ((P->base[i + 1] - D[i]) + P->tau[i + 1]) / (D[n - 1] - D[i]);
        zhat[i] = sqrt(head * prod);
    }
}

/* Column c (1 <= c < m) of the Householder reflector that maps the unit
 * vector u (length m) to a multiple of e_0: orthogonal to u, unit. */
static void householder_col(const double *u, size_t m, size_t c, double *col)
{
    double s = u[0] >= 0 ? 1.0 : -1.0, v0 = u[0] + s, vtv = 2.0 * (1.0 + s * u[0]);
    size_t i;

    /* v = u + s e_0, |v|^2 = 2 (1 + |u_0|); H = I - 2 v v^T / |v|^2 */
    for (i = 0; i < m; i++) {
        double vi = i == 0 ? v0 : u[i];

        col[i] = (i == c ? 1.0 : 0.0) - 2.0 * vi * u[c] / vtv;
    }
}

int geometry_axes(const geometry *g, size_t k, double *axes)
{
    const geometry_priv *P = g->priv;
    size_t n = g->n, nr = P->n_red, pos = 0, mmax = 1, i, j;
    double *zhat = NULL, *v = NULL, *u = NULL, *col = NULL;
    int rc = -ENOMEM;

    if (k > n)
        return -EINVAL;
    if (k == 0)
        return 0;
    for (j = 0; j < nr; j++)
        if (P->start[j + 1] - P->start[j] > mmax)
            mmax = P->start[j + 1] - P->start[j];
    zhat = malloc((nr ? nr : 1) * sizeof *zhat);
    v = malloc((nr ? nr : 1) * sizeof *v);
    u = malloc(mmax * sizeof *u);
    col = malloc(mmax * sizeof *col);
    if (!zhat || !v || !u || !col)
        goto out;
    /* Roots are visited from the largest down: zhat is needed as soon as
     * one root is among the k; skip its O(nr^2) when only deflated axes
     * are asked for. */
    if (nr > 0 && k > P->start[nr] - P->start[nr - 1] - 1)
        gu_eisenstat(P, (double)n, zhat);

    for (j = nr; j-- > 0 && pos < k;) {
        size_t s0 = P->start[j], m = P->start[j + 1] - s0, c;
        double nrm = 0, scale = 0;

        for (i = 0; i < m; i++)
            u[i] = P->g[P->perm[s0 + i]] / P->Z[j];
        for (c = 1; c < m && pos < k; c++, pos++) {
            double *ax = axes + pos * n;

            memset(ax, 0, n * sizeof *ax);
            householder_col(u, m, c, col);
            for (i = 0; i < m; i++)
                ax[P->perm[s0 + i]] = col[i];
        }
        if (pos == k)
            break;
        /* v_i = zhat_i / (D_i - lambda_j), scaled by its largest entry */
        for (i = 0; i < nr; i++) {
            v[i] = zhat[i] / ((P->D[i] - P->base[j]) - P->tau[j]);
            if (fabs(v[i]) > scale)
                scale = fabs(v[i]);
        }
        for (i = 0; i < nr; i++) {
            v[i] /= scale;
            nrm += v[i] * v[i];
        }
        nrm = sqrt(nrm);
        {
            double *ax = axes + pos * n;
            size_t b;

            memset(ax, 0, n * sizeof *ax);
            for (b = 0; b < nr; b++)
                for (i = P->start[b]; i < P->start[b + 1]; i++)
                    ax[P->perm[i]] = v[b] / nrm * (P->g[P->perm[i]] / P->Z[b]);
        }
        pos++;
    }
    for (i = 0; i < g->n_zero_gains && pos < k; i++, pos++) {
        double *ax = axes + pos * n;

        memset(ax, 0, n * sizeof *ax);
        ax[P->zeros[i]] = 1.0;
    }
    rc = 0;
out:
    free(zhat);
    free(v);
    free(u);
    free(col);
    return rc;
}
