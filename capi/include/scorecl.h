/*
 * scorecl.h: the C ABI of scorecl-core (library: libscorecl_capi.so /
 * .dylib / scorecl_capi.dll, built by `cargo build --release -p scorecl-capi`).
 *
 * Every function returns SCORECL_OK (0) or a negative code; then
 * scorecl_last_error() gives the message of this thread's last call, naming
 * the argument. Arrays are row-major float32 (labels uint32). Optional
 * arguments (weights, gradients, statistics) may be NULL: NULL weights are
 * the unweighted loss; gradients are given both or neither.
 *
 * The formulas are scorecl-core's (see its docs): S(v) = ||s(v)||/sqrt(dim),
 * raw_i = |S(v1_i) - S(v2_i)|^gamma, w_i = raw_i / mean(raw),
 * w_i <- (1 - alpha) + alpha * w_i, w_i <- min(w_i, w_max).
 */
#ifndef SCORECL_H
#define SCORECL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SCORECL_OK 0
#define SCORECL_ERR_NULL (-1)     /* a required pointer was NULL */
#define SCORECL_ERR_INVALID (-2)  /* a shape or value was rejected */
#define SCORECL_ERR_INTERNAL (-3) /* internal error */

/* Weight modes. */
#define SCORECL_MODE_UNIFORM 0
#define SCORECL_MODE_SCORE 1
#define SCORECL_MODE_SHUFFLED 2

/* Copies the last error message (NUL-terminated, truncated to len - 1
 * bytes) into buf (may be NULL); returns its full length, 0 after success. */
size_t scorecl_last_error(char *buf, size_t len);

/* Pair weights from the two views' score fields s1, s2 (n x dim each):
 * weights_out (n); stats_out (2n: S(v1) then S(v2)) or NULL. The shuffled
 * mode draws its permutation from (seed, step) as the trainer does. */
int32_t scorecl_score_weights(const float *s1, const float *s2, size_t n, size_t dim,
                              int32_t mode, float gamma, float alpha, float w_max,
                              uint64_t seed, uint64_t step, float *weights_out,
                              float *stats_out);

/* The same weights from any per-view statistic (n each). */
int32_t scorecl_weights_from_statistics(const float *stat_a, const float *stat_b, size_t n,
                                        int32_t mode, float gamma, float alpha, float w_max,
                                        uint64_t seed, uint64_t step, float *weights_out);

/* Weighted NT-Xent (SimCLR) of z1, z2 (n x d); loss (1); grad1, grad2 (n x d). */
int32_t scorecl_simclr(const float *z1, const float *z2, size_t n, size_t d,
                       const float *weights, float temperature, float *grad1, float *grad2,
                       float *loss);

/* Weighted SimSiam: predictions p1, p2 and (stop-gradient) projections z1, z2
 * (n x d); loss (1); gradients for p1, p2. */
int32_t scorecl_simsiam(const float *p1, const float *p2, const float *z1, const float *z2,
                        size_t n, size_t d, const float *weights, float *grad_p1,
                        float *grad_p2, float *loss);

/* Weighted W-MSE: whitening in chunks of w_size rows (a divisor of n),
 * shrinkage eps in [0, 1); loss (1). */
int32_t scorecl_wmse(const float *z1, const float *z2, size_t n, size_t d,
                     const float *weights, float eps, size_t w_size, float *grad1,
                     float *grad2, float *loss);

/* Weighted VICReg; loss (4): total, invariance, variance, covariance. */
int32_t scorecl_vicreg(const float *z1, const float *z2, size_t n, size_t d,
                       const float *weights, float sim_coeff, float std_coeff,
                       float cov_coeff, float *grad1, float *grad2, float *loss);

/* The k-NN vote of one test row: sims, labels (k each) -> scores (classes),
 * pred (1): the class with the largest sum of exp(sim / temperature). */
int32_t scorecl_knn_vote(const float *sims, const uint32_t *labels, size_t k, size_t classes,
                         float temperature, float *scores, uint32_t *pred);

/* The weighted k-NN classifier on cosine similarity: preds (n_test). */
int32_t scorecl_knn_predict(const float *train, const uint32_t *train_labels, size_t n_train,
                            const float *test, size_t n_test, size_t d, size_t classes,
                            size_t k, float temperature, uint32_t *preds);

#ifdef __cplusplus
}
#endif

#endif /* SCORECL_H */
