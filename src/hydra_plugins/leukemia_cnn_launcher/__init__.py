"""Hydra instantiates launchers only from its ``hydra_plugins`` namespace: the sweep's SLURM
launcher is declared here, its code is :mod:`leukemia_cnn.study.slurmlauncher`."""

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from leukemia_cnn.study.slurmlauncher import ReportingLauncher


class SweepSlurmLauncher(ReportingLauncher, SlurmLauncher):
    """``hydra/launcher=slurm``: submitit's SLURM launcher whose waits end."""
