"""``python -m bnn_sgmcmc.bench``: the main benchmark, :mod:`bnn_sgmcmc.bench.speed`."""

from bnn_sgmcmc.bench import speed

if __name__ == "__main__":
    speed.main()
