"""OLE DB's constants, with OLE DB's names and numeric values.

For code ported from OLE DB: ``Operation.GetStatus``, ``Abort``,
``WaitForAsynchCompletion``, ``Advise`` and ``Unadvise`` return these HRESULTs
instead of raising.  Values are those of the Windows SDK headers ``oledberr.h``,
``oledb.h`` and ``OleCtl.h``.
"""

from __future__ import annotations

# HRESULTs: success codes
S_OK = 0x00000000
S_FALSE = 0x00000001
DB_S_ASYNCHRONOUS = 0x00040ED0
DB_S_UNWANTEDOPERATION = 0x00040ECC
DB_S_UNWANTEDPHASE = 0x00040ECE
DB_S_UNWANTEDREASON = 0x00040ECF
DB_S_ENDOFROWSET = 0x00040EC6
DB_S_NORESULT = 0x00040EC9

# HRESULTs: errors (as unsigned 32-bit values, the way the headers spell them)
DB_E_CANCELED = 0x80040E4E
DB_E_CANTCANCEL = 0x80040E15
DB_E_BADCHAPTER = 0x80040E06
DB_E_NOTSUPPORTED = 0x80040E53
E_UNEXPECTED = 0x8000FFFF
E_NOTIMPL = 0x80004001
E_FAIL = 0x80004005
E_INVALIDARG = 0x80070057
CONNECT_E_NOCONNECTION = 0x80040200
CONNECT_E_ADVISELIMIT = 0x80040201

# DBASYNCHOP
DBASYNCHOP_OPEN = 0

# DBASYNCHPHASE
DBASYNCHPHASE_INITIALIZATION = 0
DBASYNCHPHASE_POPULATION = 1
DBASYNCHPHASE_COMPLETE = 2
DBASYNCHPHASE_CANCELED = 3

# DBPROPVAL_ASYNCH
DBPROPVAL_ASYNCH_INITIALIZE = 0x01
DBPROPVAL_ASYNCH_SEQUENTIALPOPULATION = 0x02
DBPROPVAL_ASYNCH_RANDOMPOPULATION = 0x04
DBPROPVAL_ASYNCH_BACKGROUNDPOPULATION = 0x08
DBPROPVAL_ASYNCH_PREPOPULATE = 0x10
DBPROPVAL_ASYNCH_POPULATEONDEMAND = 0x20

DB_NULL_HCHAPTER = 0
#: The Win32 wait value meaning "no time limit".
INFINITE = 0xFFFFFFFF


def SUCCEEDED(hr: int) -> bool:
    """Whether an HRESULT is a success code (severity bit clear)."""
    return not (hr & 0x80000000)


def FAILED(hr: int) -> bool:
    """Whether an HRESULT is an error code (severity bit set)."""
    return bool(hr & 0x80000000)
