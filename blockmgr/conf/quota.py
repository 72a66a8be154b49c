"""``[quota]`` options: default per-project limits and reservation housekeeping."""

from oslo_config import cfg

GROUP = "quota"

opts = [
    cfg.IntOpt("volumes", default=10, min=-1,
               help="Default number of volumes a project may have; -1 means unlimited."),
    cfg.IntOpt("snapshots", default=10, min=-1,
               help="Default number of snapshots a project may have; -1 means unlimited."),
    cfg.IntOpt("gigabytes", default=1000, min=-1,
               help="Default total GiB of volumes and snapshots a project may have; "
                    "-1 means unlimited."),
    cfg.IntOpt("groups", default=10, min=-1,
               help="Default number of consistency groups a project may have; "
                    "-1 means unlimited."),
    cfg.IntOpt("per_volume_gigabytes", default=-1, min=-1,
               help="Largest single volume, in GiB, a project may create; -1 means "
                    "unlimited. A limit-only quota: checked, never reserved."),
    cfg.IntOpt("reservation_expire", default=86400, min=1,
               help="Seconds until an unresolved reservation expires. Reservations owned "
                    "by a flow are resolved when the flow ends or is recovered, so expiry "
                    "is only the last safety net."),
    cfg.IntOpt("reservation_clean_interval", default=600, min=1,
               help="Seconds between sweeps that release expired and orphaned "
                    "reservations."),
    cfg.IntOpt("until_refresh", default=0, min=0,
               help="Recompute a usage from the real tables after this many reservations "
                    "against it; 0 disables count-based refresh."),
    cfg.IntOpt("max_age", default=0, min=0,
               help="Recompute a usage from the real tables when it is older than this "
                    "many seconds at reserve time; 0 disables age-based refresh."),
    cfg.BoolOpt("no_snapshot_gb_quota", default=False,
                help="Do not count snapshot sizes against the gigabytes quota."),
    cfg.IntOpt("reconcile_interval", default=3600, min=0,
               help="Seconds between the scheduler's quota reconciler runs: release the "
                    "reservations of finished or vanished flows, recompute every project's "
                    "usage from the real tables, and log what was fixed. 0 disables the "
                    "periodic run ('blockmgr-manage quota reconcile' still works)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
