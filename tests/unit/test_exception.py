"""The exception hierarchy: readable messages, RPC-safe round trips, families by meaning."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from blockmgr import exception

FAMILIES = (exception.NotFound, exception.Invalid, exception.Conflict, exception.QuotaError,
            exception.Unsupported, exception.DriverError, exception.BackendUnavailable,
            exception.ConfigurationError)

_PLACEHOLDER = re.compile(r"%\((\w+)\)([sdrif])")


def _all_error_classes():
    seen, todo = [], [exception.BlockmgrError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(seen), key=lambda cls: cls.__name__)


def _sample_kwargs(cls):
    return {name: (1 if kind in "di" else "x-%s" % name)
            for name, kind in _PLACEHOLDER.findall(cls.msg_fmt)}


def test_message_is_formatted_from_kwargs():
    err = exception.VolumeNotFound(volume_id="v-1")
    assert str(err) == "Volume v-1 could not be found."
    assert err.msg == str(err)
    assert err.kwargs == {"volume_id": "v-1"}
    assert err.code == 404


def test_explicit_message_wins_over_the_format():
    err = exception.InvalidInput("size must be positive", reason="ignored")
    assert str(err) == "size must be positive"


def test_missing_kwarg_does_not_hide_the_error(caplog):
    err = exception.VolumeNotFound(volume="v-1")  # wrong kwarg name
    assert "Volume %(volume_id)s could not be found." in str(err)
    assert "v-1" in str(err)
    assert "Bad kwargs" in caplog.text


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_message_format_formats(cls):
    err = cls(**_sample_kwargs(cls))
    assert "%(" not in str(err)
    assert str(err).strip()


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_round_trips_through_json(cls):
    err = cls(**_sample_kwargs(cls))
    data = json.loads(json.dumps(err.to_dict()))
    back = exception.BlockmgrError.from_dict(data)
    assert type(back) is cls
    assert str(back) == str(err)
    assert back.kwargs == err.kwargs
    assert back.code == err.code


def test_non_json_kwargs_become_strings():
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    err = exception.InvalidInput(reason="bad", at=when, items=(1, {"k": when}))
    data = err.to_dict()
    assert data["kwargs"] == {"reason": "bad", "at": str(when), "items": [1, {"k": str(when)}]}
    json.dumps(data)


def test_unknown_type_from_a_newer_peer_becomes_the_root_error():
    back = exception.BlockmgrError.from_dict(
        {"type": "SomethingNew", "message": "it broke", "kwargs": {"a": 1}})
    assert type(back) is exception.BlockmgrError
    assert str(back) == "it broke"
    assert back.kwargs == {"a": 1}


def test_from_dict_without_message_uses_the_class_format():
    back = exception.BlockmgrError.from_dict({"type": "NotFound"})
    assert type(back) is exception.NotFound
    assert str(back) == exception.NotFound.msg_fmt


def test_round_tripped_error_can_be_raised_and_caught_by_family():
    back = exception.BlockmgrError.from_dict(exception.VolumeIsBusy(volume_name="v").to_dict())
    with pytest.raises(exception.Conflict):
        raise back


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_belongs_to_at_most_one_family(cls):
    families = [family for family in FAMILIES if issubclass(cls, family)]
    assert len(families) <= 1


def test_family_codes():
    assert exception.NotFound.code == 404
    assert exception.Invalid.code == 400
    assert exception.Conflict.code == 409
    assert exception.QuotaError.code == 413
    assert exception.Unsupported.code == 501
    assert exception.BackendUnavailable.code == 503


def test_status_transition_error_is_a_conflict():
    assert issubclass(exception.InvalidStatusTransition, exception.Conflict)


def test_over_quota_lists_the_resources_over():
    err = exception.OverQuota(project_id="p", requested={"volumes": 1}, limits={"volumes": 0},
                              in_use={"volumes": 0}, reserved={"volumes": 0},
                              overs=["volumes"])
    assert err.overs == ["volumes"]
    assert "Quota exceeded for project p" in str(err)
    assert exception.BlockmgrError.from_dict(err.to_dict()).overs == ["volumes"]


def test_configuration_error_names_section_and_option():
    err = exception.ConfigurationError(section="quota", option="volumes", reason="bad")
    assert str(err) == "Configuration error in [quota] volumes: bad"


def test_driver_errors_may_be_rescheduled_but_bad_requests_not():
    assert exception.DriverError.reschedulable is True
    assert exception.NotFound.reschedulable is False
    assert exception.Invalid.reschedulable is False


def test_attachment_errors_are_cinders_codes():
    """A destructive operation on a held volume is a 400 (Cinder's VolumeAttached is an
    Invalid), caught as InvalidVolume too; attachments have their own not-found and
    invalid errors."""
    err = exception.VolumeAttached(volume_id="v1")
    assert err.code == 400 and isinstance(err, exception.InvalidVolume)
    assert "v1" in err.msg and "detach" in err.msg
    assert exception.AttachmentNotFound(attachment_id="a1").code == 404
    invalid = exception.InvalidAttachment(reason="not connected")
    assert invalid.code == 400 and "not connected" in invalid.msg
