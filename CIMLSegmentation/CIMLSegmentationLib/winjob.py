"""Windows: the kill-on-close Job object that ends the worker's whole tree when Slicer ends,
however it ends (see ``process``), and the flags the worker is created with.

The worker is created suspended (``windows_creation_flags``), put into a new Job object with
``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`` whose only handle Slicer holds (``kill_on_close_job``),
then resumed (``resume_process``): PythonSlicer is a launcher that starts the real Python itself,
and a child started before its parent joined the job would be outside it. Plain Python on
``ctypes``; the functions that call Windows run only there, the flags are plain values tested
everywhere. Imports the standard library only.
"""

import ctypes
import subprocess

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9  # the JOBOBJECTINFOCLASS value
# CreateProcess flags (winbase.h), as values: subprocess defines them on Windows only.
CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def windows_creation_flags(suspended: bool = True) -> int:
    """The worker's CreateProcess flags on Windows: its own process group (so taskkill /T and
    CTRL_BREAK reach its tree), no console window, and suspended until it is in the kill-on-close
    Job object (``suspended``), so the Python that the PythonSlicer launcher starts is born inside
    the job."""
    return CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW | (CREATE_SUSPENDED if suspended else 0)


class _BasicLimits(ctypes.Structure):  # JOBOBJECT_BASIC_LIMIT_INFORMATION
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                ("SchedulingClass", ctypes.c_uint32)]


class _ExtendedLimits(ctypes.Structure):  # JOBOBJECT_EXTENDED_LIMIT_INFORMATION
    _fields_ = [("BasicLimitInformation", _BasicLimits), ("IoInfo", ctypes.c_uint64 * 6),
                ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]


def _kernel32():
    """Windows only: kernel32 with the signatures used here (handles are pointer-sized)."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle, dword = ctypes.c_void_p, ctypes.c_uint32
    kernel32.CreateJobObjectW.restype = handle
    kernel32.CreateJobObjectW.argtypes = (ctypes.c_void_p, ctypes.c_wchar_p)
    kernel32.SetInformationJobObject.argtypes = (handle, ctypes.c_int, ctypes.c_void_p, dword)
    kernel32.OpenProcess.restype = handle
    kernel32.OpenProcess.argtypes = (dword, ctypes.c_int, dword)
    kernel32.AssignProcessToJobObject.argtypes = (handle, handle)
    kernel32.CloseHandle.argtypes = (handle,)
    return kernel32


def resume_process(proc: subprocess.Popen) -> None:
    """Windows: resume a process created with CREATE_SUSPENDED. subprocess closes the main
    thread's handle, so the process is resumed through its own handle (``NtResumeProcess``, in
    ntdll since Windows XP); a launcher that cannot be resumed is ended rather than left hanging."""
    ntdll = ctypes.WinDLL("ntdll")
    ntdll.NtResumeProcess.argtypes = (ctypes.c_void_p,)
    status = ntdll.NtResumeProcess(ctypes.c_void_p(int(proc._handle)))  # Popen keeps the process handle there
    if status != 0:
        proc.kill()
        raise OSError(f"the worker could not be resumed (NTSTATUS {status & 0xFFFFFFFF:#x})")


def kill_on_close_job(pid: int):
    """Windows: put process ``pid`` in a new Job object that kills all its processes when its
    last handle closes; returns that handle, which only this process holds (not inheritable).
    The worker's children join the job as they start."""
    kernel32 = _kernel32()
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        raise ctypes.WinError(ctypes.get_last_error())
    limits = _ExtendedLimits()
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    process = kernel32.OpenProcess(0x0100 | 0x0001, False, pid)  # PROCESS_SET_QUOTA | PROCESS_TERMINATE
    ok = bool(process) and bool(kernel32.SetInformationJobObject(
        job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(limits), ctypes.sizeof(limits))) \
        and bool(kernel32.AssignProcessToJobObject(job, process))
    error = ctypes.get_last_error()
    if process:
        kernel32.CloseHandle(process)
    if not ok:
        kernel32.CloseHandle(job)
        raise ctypes.WinError(error)
    return job


def close_handle(handle) -> None:
    """Close a Job object's handle: with the last one closed, Windows ends the job's processes."""
    _kernel32().CloseHandle(handle)
