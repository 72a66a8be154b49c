"""``[api]`` options: the REST API (``blockmgr-api`` and the API inside ``blockmgr serve``)."""

from oslo_config import cfg

GROUP = "api"

opts = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address the REST API listens on. The default keeps it on this "
                            "machine; use 0.0.0.0 (behind authentication) to serve others."),
    cfg.PortOpt("bind_port", default=8776,
                help="TCP port of the REST API (8776 is the block storage API's usual port, "
                     "so existing clients find it)."),
    cfg.StrOpt("auth_strategy", default="noauth", choices=[
                   ("noauth", "trust the X-User-Id / X-Project-Id / X-Roles headers (or a "
                              "'user:project' X-Auth-Token); for one machine or a trusted "
                              "network only"),
                   ("keystone", "validate tokens with keystonemiddleware's auth_token; "
                                "configure it in [keystone_authtoken]")],
               help="How API callers are identified. See docs/rest-api.md."),
    cfg.IntOpt("max_limit", default=1000, min=1,
               help="Most items one list call returns; a larger ``limit`` is cut to this, "
                    "and the response carries a ``*_links`` next link to page on."),
    cfg.StrOpt("public_endpoint",
               help="Base URL the API is reached at from outside (for example behind a "
                    "proxy), used in version documents and pagination links. Default: "
                    "the URL of each request."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
