"""The benchmark's networks, sizes and repeats per mode."""

SECTIONS = ("ceilings", "calls", "ops", "layers", "conv", "train", "mlp")
DISK_SIZES = (2, 25, 25, 25, 2)
MLP_SIZES = (784, 1024, 1024, 10)
LR, MOMENTUM = 0.01, 0.9
CHECK_STEPS, CHECK_RTOL, CHECK_ATOL = 3, 1e-4, 1e-6

# Sizes and repeats per mode. Linear cases are (batch, in, out); a case whose fwd+bwd does more than
# `big_flop` flops runs `big_repeats` times.
CONFIGS = {
    "full": dict(
        linear=[(1, 25, 25), (100, 25, 25), (1000, 25, 25), (256, 1024, 1024), (4096, 4096, 4096)],
        elementwise=[2 ** 10, 2 ** 16, 2 ** 24], disk_batches=[1, 100, 1000], mlp_batch=256,
        mlp_sizes=MLP_SIZES, gemm_n=2048, copy_n=2 ** 26, repeats=9, big_repeats=3, big_flop=1e11,
        target=0.05, threads=[1, 2], layers_batch=100, conv_batch=100),
    "quick": dict(
        linear=[(1, 25, 25), (100, 25, 25), (1000, 25, 25), (256, 1024, 1024)],
        elementwise=[2 ** 10, 2 ** 16, 2 ** 24], disk_batches=[1, 100, 1000], mlp_batch=256,
        mlp_sizes=MLP_SIZES, gemm_n=2048, copy_n=2 ** 26, repeats=5, big_repeats=3, big_flop=1e11,
        target=0.02, threads=[1], layers_batch=100, conv_batch=100),
    "smoke": dict(  # for the tests: tiny sizes, seconds in all
        linear=[(1, 25, 25), (100, 25, 25)], elementwise=[2 ** 10], disk_batches=[1, 100],
        mlp_batch=8, mlp_sizes=(784, 64, 64, 10), gemm_n=128, copy_n=2 ** 16, repeats=2,
        big_repeats=2, big_flop=1e11, target=0.001, threads=[1], layers_batch=4, conv_batch=4),
}
