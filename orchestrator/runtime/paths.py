"""Fixed paths inside every worker; the host paths behind them vary per job.

Plain names with no imports, so the pure modules that build rustic's argv can use them.
"""

HOT = "/repo/hot"
COLD = "/repo/cold"
CACHE = "/cache"
SECRETS = "/run/unstoppable/secrets"
RESTORE_TARGET = "/restore"
# The rustic profile among a run's secret files that points the cold repository at S3.
COLD_PROFILE = "cold.toml"
