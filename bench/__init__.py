"""Offload's benchmarks: ``offload bench`` runs them all (see ``bench/README.md``).

Every benchmark runs its candidates side by side in one run, interleaved and repeated, and
reports medians and ratios: the machines are shared and noisy, so only figures taken in the
same minutes compare.
"""
