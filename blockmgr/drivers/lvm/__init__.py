"""LVM reference driver: volumes as logical volumes of one volume group (thick or thin).

``driver`` holds the driver class, ``lvm`` the lvm2 command layer, ``names`` the naming rules
and the validation of user-given names, ``manageable`` the manageable listings, ``datacopy``
the dd copies, ``options`` the config options. See docs/driver-lvm.md.
"""
