"""Options of the loopback driver, registered in the section of each backend that uses it."""

from oslo_config import cfg

#: Placeholder replaced by the backend's section name in ``loopback_directory``.
BACKEND_PLACEHOLDER = "%(backend)s"

REFLINK_AUTO = "auto"
REFLINK_ALWAYS = "always"
REFLINK_NEVER = "never"

ATTACH_LOOP_DEVICE = "loop_device"
ATTACH_FILE = "file"

opts = [
    cfg.StrOpt(
        "loopback_directory",
        default="$state_path/volumes/" + BACKEND_PLACEHOLDER,
        help="Directory holding this backend's volume and snapshot files. ``%(backend)s`` is "
             "replaced by the backend's section name, so several loopback backends can share "
             "the default. Files in it that blockmgr did not create can be adopted with "
             "manage-existing. Put it on btrfs or xfs (reflink=1) for instant snapshots and "
             "clones."),
    cfg.StrOpt(
        "loopback_use_reflink",
        default=REFLINK_AUTO,
        choices=[(REFLINK_AUTO, "use reflink (FICLONE) if a probe at start shows the "
                                "filesystem supports it, else sparse copies"),
                 (REFLINK_ALWAYS, "require reflink; the backend fails to start without it"),
                 (REFLINK_NEVER, "always make sparse copies")],
        help="How snapshots and clones are made."),
    cfg.StrOpt(
        "loopback_attach",
        default=ATTACH_LOOP_DEVICE,
        choices=[(ATTACH_LOOP_DEVICE, "attach a loop device with losetup (needs root)"),
                 (ATTACH_FILE, "hand out the volume file's path itself (no root needed)")],
        help="What initialize_connection gives the consumer as ``device_path``."),
]


def list_opts():
    return list(opts)
