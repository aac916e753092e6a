"""TCB evaluation as Intel's Quote Verification Library does it (pure, no crypto).

Given the platform TCB (SGX components and PCESVN from the PCK certificate, for
TDX also the quote's TEE_TCB_SVN), the QE report and *already authenticated*
TCB info and QE identity, select the TCB levels and converge their statuses:

* platform level: the first ``tcbLevel`` (Intel serves them newest first) whose
  16 SGX components and PCESVN are all <= the PCK's; for TDX the TDX components
  must also be <= TEE_TCB_SVN, skipping the first two when TEE_TCB_SVN[1] (the
  TDX module major version) is non-zero: those are judged by the TDX module
  identity ``TDX_<major>`` instead (ISVSVN = TEE_TCB_SVN[0]);
* QE identity: MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES must
  match; the QE's ISVSVN selects its level;
* OutOfDate / Revoked of the module or the QE lowers the platform status; a TD
  report 1.5 whose TEE_TCB_SVN2 already reaches the latest level turns an
  OutOfDate caused by the module into TDRelaunchAdvised(ConfigurationNeeded).

A platform that matches no level (Intel: TCB_NOT_SUPPORTED) and a QE or TDX
module that does not match its identity are verification failures
(:class:`MismatchError`); every other outcome is a status for policy to judge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from veritee.errors import MismatchError
from veritee.tee.dcap.report import EnclaveReport
from veritee.tee.dcap.tcbinfo import ModuleTcbLevel, QeIdentity, TcbInfo, TcbLevel

UP_TO_DATE = "UpToDate"
SW_HARDENING_NEEDED = "SWHardeningNeeded"
CONFIGURATION_NEEDED = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
REVOKED = "Revoked"
TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"

_MODULE_STATUSES = frozenset({UP_TO_DATE, OUT_OF_DATE, REVOKED})
_QE_STATUSES = frozenset(
    {UP_TO_DATE, OUT_OF_DATE, CONFIGURATION_NEEDED, REVOKED, OUT_OF_DATE_CONFIGURATION_NEEDED}
)
_CONFIGURATION = frozenset(
    {
        CONFIGURATION_NEEDED,
        OUT_OF_DATE_CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)


@dataclass(frozen=True)
class TdxTcb:
    """What a TD report contributes to TCB evaluation."""

    tee_tcb_svn: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    tee_tcb_svn2: bytes | None = None


@dataclass(frozen=True)
class TcbEvaluation:
    status: str
    advisory_ids: tuple[str, ...]
    tcb_date: dt.datetime
    """The earliest of the matched levels' dates (Intel's ``tcb_level_date_tag``)."""
    platform_level: TcbLevel
    platform_status: str
    qe_level: ModuleTcbLevel | None
    module_id: str | None
    module_level: ModuleTcbLevel | None


def _ge(values: Sequence[int], floor: Sequence[int], start: int = 0) -> bool:
    return all(values[i] >= floor[i] for i in range(start, 16))


def _svns(data: bytes) -> tuple[int, ...]:
    return tuple(data[:16])


def _describe_tcb(sgx: Sequence[int], pcesvn: int, tdx: TdxTcb | None) -> str:
    text = f"SGX components {list(sgx)}, PCESVN {pcesvn}"
    if tdx is not None:
        text += f", TEE_TCB_SVN {tdx.tee_tcb_svn.hex()}"
    return text


def _module_id(version: int) -> str:
    return f"TDX_{version:02X}"


def find_module_identity(info: TcbInfo, major: int) -> tuple[str, bytes, bytes, bytes, tuple[
        ModuleTcbLevel, ...]] | None:
    """(id, mrsigner, attributes, mask, levels) of TDX module identity ``TDX_<major>``."""
    wanted = _module_id(major)
    for identity in info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return (
                identity.id, identity.mrsigner, identity.attributes, identity.attributes_mask,
                identity.tcb_levels,
            )
    return None


def check_tdx_module(info: TcbInfo, tdx: TdxTcb, quote_version: int) -> None:
    """MRSIGNER_SEAM and SEAM_ATTRIBUTES against the TCB info's TDX module (identity)."""
    if info.tdx_module is None:
        raise MismatchError("TDX module check: the TCB info has no tdxModule")
    mrsigner = info.tdx_module.mrsigner
    attributes, mask = info.tdx_module.attributes, info.tdx_module.attributes_mask
    major = tdx.tee_tcb_svn[1]
    where = "tdxModule"
    if quote_version > 3 and major > 0:
        found = find_module_identity(info, major)
        if found is None:
            raise MismatchError(
                f"TDX module check: the TCB info has no identity {_module_id(major)} for "
                f"TDX module major version {major} (TEE_TCB_SVN[1])"
            )
        where, mrsigner, attributes, mask, _ = found
    if tdx.mr_signer_seam != mrsigner:
        raise MismatchError(
            f"TDX module check: MRSIGNERSEAM {tdx.mr_signer_seam.hex()} is not the "
            f"{where} MRSIGNER {mrsigner.hex()}"
        )
    masked = bytes(a & m for a, m in zip(tdx.seam_attributes, mask, strict=True))
    if masked != attributes:
        raise MismatchError(
            f"TDX module check: SEAMATTRIBUTES {tdx.seam_attributes.hex()} (masked) do not "
            f"match {where} attributes {attributes.hex()}"
        )


def check_qe_identity(identity: QeIdentity, qe: EnclaveReport) -> ModuleTcbLevel | None:
    """Match the QE report to the identity; returns its TCB level (None: none matches)."""
    if qe.misc_select & identity.miscselect_mask != identity.miscselect:
        raise MismatchError(
            f"QE identity mismatch: MISCSELECT {qe.misc_select:#010x} (masked with "
            f"{identity.miscselect_mask:#010x}) is not {identity.miscselect:#010x}"
        )
    masked = bytes(a & m for a, m in zip(qe.attributes, identity.attributes_mask, strict=True))
    if masked != identity.attributes:
        raise MismatchError(
            f"QE identity mismatch: ATTRIBUTES {qe.attributes.hex()} (masked) are not "
            f"{identity.attributes.hex()}"
        )
    if qe.mr_signer != identity.mrsigner:
        raise MismatchError(
            f"QE identity mismatch: MRSIGNER {qe.mr_signer.hex()} is not Intel's "
            f"{identity.id} signer {identity.mrsigner.hex()}",
            hint="the quote was not produced by Intel's quoting enclave",
        )
    if qe.isv_prod_id != identity.isvprodid:
        raise MismatchError(
            f"QE identity mismatch: ISVPRODID {qe.isv_prod_id} is not {identity.isvprodid}"
        )
    for level in identity.tcb_levels:
        if qe.isv_svn >= level.isvsvn:
            if level.tcb_status not in _QE_STATUSES:
                raise MismatchError(
                    f"QE identity: TCB status {level.tcb_status!r} is not valid for a QE"
                )
            return level
    return None


def _converge(status: str, component: str | None) -> str:
    """Lower a platform status by a component's (module or QE) OutOfDate / Revoked."""
    if component == OUT_OF_DATE:
        if status in (UP_TO_DATE, SW_HARDENING_NEEDED):
            return OUT_OF_DATE
        if status in (CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return OUT_OF_DATE_CONFIGURATION_NEEDED
    if component == REVOKED:
        return REVOKED
    return status


def _relaunch(
    info: TcbInfo,
    svn2: bytes,
    sgx_status: str,
    tdx_status: str,
    module_status: str | None,
    qe_status: str | None,
) -> str:
    """Intel's TD relaunch check (TD report 1.5): would a relaunch reach the latest TCB?"""
    if qe_status in (OUT_OF_DATE, REVOKED) or not info.tcb_levels:
        return tdx_status
    if sgx_status not in (
        UP_TO_DATE, SW_HARDENING_NEEDED, CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        return tdx_status
    if tdx_status not in (OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED):
        return tdx_status
    if module_status != OUT_OF_DATE:
        return tdx_status
    latest = info.tcb_levels[0]
    latest_tdx = latest.tdx_components or (0,) * 16
    if svn2[1] == 0:
        reaches = svn2[0] >= latest_tdx[0] and svn2[2] >= latest_tdx[2]
    else:
        found = find_module_identity(info, svn2[1])
        if found is None:
            raise MismatchError(
                f"TD relaunch check: no TDX module identity {_module_id(svn2[1])} for "
                f"TEE_TCB_SVN2[1] = {svn2[1]}"
            )
        levels = found[4]
        if not levels:
            raise MismatchError(f"TD relaunch check: {found[0]} has no TCB levels")
        reaches = svn2[0] >= levels[0].isvsvn and svn2[2] >= latest_tdx[2]
    if not reaches:
        return tdx_status
    if sgx_status in _CONFIGURATION or tdx_status in _CONFIGURATION:
        return TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
    return TD_RELAUNCH_ADVISED


def evaluate_tcb(
    info: TcbInfo,
    *,
    sgx_components: Sequence[int],
    pcesvn: int,
    qe_report: EnclaveReport,
    qe_identity: QeIdentity,
    tdx: TdxTcb | None = None,
) -> TcbEvaluation:
    """Select TCB levels and converge the statuses (see the module docstring)."""
    is_tdx = tdx is not None
    if is_tdx and (info.id != "TDX" or info.version < 3):
        raise MismatchError(f"TCB info id {info.id} v{info.version} cannot judge a TDX quote")
    if not is_tdx and info.id != "SGX":
        raise MismatchError(f"TCB info id {info.id} cannot judge an SGX quote")

    start = 2 if tdx is not None and tdx.tee_tcb_svn[1] > 0 else 0
    sgx_level: TcbLevel | None = None
    tdx_level: TcbLevel | None = None
    for level in info.tcb_levels:
        if not (_ge(sgx_components, level.sgx_components) and pcesvn >= level.pcesvn):
            continue
        if tdx is None:
            sgx_level = level
            break
        if sgx_level is None:
            sgx_level = level
        if level.tdx_components is not None and _ge(
            _svns(tdx.tee_tcb_svn), level.tdx_components, start
        ):
            tdx_level = level
            break
    platform = tdx_level if is_tdx else sgx_level
    if sgx_level is None or platform is None:
        raise MismatchError(
            f"TCB level: the platform TCB ({_describe_tcb(sgx_components, pcesvn, tdx)}) "
            f"matches no tcbLevel in the TCB info for FMSPC {info.fmspc.hex()} "
            f"(TCB evaluation data number {info.tcb_evaluation_data_number}): "
            "Intel's verifier reports TCB_NOT_SUPPORTED",
            hint="the platform is older than every TCB level Intel lists: update its "
            "microcode/firmware/TDX module, or check that the TCB info is for this platform",
        )

    qe_level = check_qe_identity(qe_identity, qe_report)
    if qe_level is None:
        raise MismatchError(
            f"QE identity: the QE's ISVSVN {qe_report.isv_svn} is below every TCB level of "
            f"{qe_identity.id} (Intel's verifier reports TCB_NOT_SUPPORTED)"
        )

    dates = [platform.tcb_date, qe_level.tcb_date]
    advisories = list(platform.advisory_ids)
    module_id: str | None = None
    module_level: ModuleTcbLevel | None = None
    status = platform.tcb_status
    if tdx is not None:
        major = tdx.tee_tcb_svn[1]
        if major > 0:
            found = find_module_identity(info, major)
            if found is None:
                raise MismatchError(
                    f"TCB level: no TDX module identity {_module_id(major)} in the TCB info"
                )
            module_id = found[0]
            for candidate in found[4]:
                if tdx.tee_tcb_svn[0] >= candidate.isvsvn:
                    module_level = candidate
                    break
            if module_level is None:
                raise MismatchError(
                    f"TCB level: TDX module ISVSVN {tdx.tee_tcb_svn[0]} is below every level "
                    f"of {module_id} (Intel's verifier reports TCB_NOT_SUPPORTED)"
                )
            if module_level.tcb_status not in _MODULE_STATUSES:
                raise MismatchError(
                    f"TCB level: status {module_level.tcb_status!r} is not valid for {module_id}"
                )
            dates.append(module_level.tcb_date)
            advisories.extend(module_level.advisory_ids)
            status = _converge(status, module_level.tcb_status)
        if status != REVOKED and tdx.tee_tcb_svn2 is not None:
            status = _relaunch(
                info,
                tdx.tee_tcb_svn2,
                sgx_level.tcb_status,
                status,
                module_level.tcb_status if module_level else None,
                qe_level.tcb_status,
            )
    status = _converge(status, qe_level.tcb_status)
    advisories.extend(qe_level.advisory_ids)
    return TcbEvaluation(
        status=status,
        advisory_ids=tuple(dict.fromkeys(advisories)),
        tcb_date=min(dates),
        platform_level=platform,
        platform_status=platform.tcb_status,
        qe_level=qe_level,
        module_id=module_id,
        module_level=module_level,
    )
