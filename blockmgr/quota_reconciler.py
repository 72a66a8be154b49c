"""The quota reconciler under its established name; it lives in :mod:`blockmgr.quota.reconciler`."""

from blockmgr.quota.reconciler import QuotaReconciler
from blockmgr.quota.reconciler import ReconcileReport
from blockmgr.quota.reconciler import UsageChange
from blockmgr.quota.reconciler import released_rows
from blockmgr.quota.reconciler import reservation_totals
from blockmgr.quota.reconciler import usages

__all__ = ["QuotaReconciler", "ReconcileReport", "UsageChange", "released_rows",
           "reservation_totals", "usages"]
