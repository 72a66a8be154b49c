"""Options of the LVM driver, registered into every backend section with ``volume_driver = lvm``."""

from oslo_config import cfg

LVM_TYPE_THICK = "default"
LVM_TYPE_THIN = "thin"

OPTS = [
    cfg.StrOpt("volume_group", default="blockmgr-volumes",
               help="Name of the LVM volume group holding this backend's volumes. It must "
                    "exist before the service starts (pvcreate + vgcreate)."),
    cfg.StrOpt("lvm_type", default=LVM_TYPE_THICK,
               choices=[(LVM_TYPE_THICK, "thick LVs: every volume allocates its whole size; "
                                         "snapshots are copy-on-write LVs of the volume's "
                                         "size"),
                        (LVM_TYPE_THIN, "thin LVs in the pool <volume_group>-pool, created "
                                        "from 95% of the VG's free space at start if missing; "
                                        "snapshots and clones are thin snapshots")],
               help="How volumes are provisioned."),
    cfg.BoolOpt("lvm_driverloaded", default=True,
                help="Whether the kernel has device-mapper. False adds ``--driverloaded n`` to "
                     "every lvm2 command and creates LVs inactive and not zeroed: only "
                     "metadata operations then work (create thick, rename, extend, remove, "
                     "report); snapshots, thin pools, data copies and attach do not."),
    cfg.StrOpt("lvm_conf_file",
               help="Path of an lvm.conf to use instead of the host's (its directory becomes "
                    "LVM_SYSTEM_DIR). The file must be named lvm.conf."),
    cfg.IntOpt("lvm_command_timeout", default=120, min=1,
               help="Seconds after which an lvm2 command is considered hung and fails."),
    cfg.StrOpt("volume_clear", default="zero",
               choices=[("zero", "overwrite a thick volume with zeros before removing it"),
                        ("none", "remove without wiping (faster; the next LV allocated on "
                                 "the same extents can read the old data)")],
               help="How thick volumes are wiped on delete. Thin volumes are never wiped: "
                    "the pool zeroes blocks when they are provisioned again."),
    cfg.StrOpt("volume_dd_blocksize", default="1M",
               help="Block size dd uses to copy (thick clones) and wipe volumes."),
    cfg.IntOpt("volume_copy_timeout", default=7200, min=1,
               help="Seconds a single dd copy or wipe may take before it fails."),
]
