//! What a `vane worker` process gives up before it takes its first request,
//! as defence in depth behind the interpreters: an escape from an engine
//! finds no inherited descriptor but its pipes, no secrets in its
//! environment (its parent cleared it), no root, no new privileges, and a
//! kernel that refuses every system call the engines do not need. Linux
//! only, as Vane is. Thread isolation runs scripts inside the server and
//! gets none of this.

use std::collections::BTreeMap;

/// Who the worker becomes when started as root (`sandbox.user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Why confinement failed; the worker exits rather than run unconfined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A system call that drops something failed.
    #[error("{what} failed: {error}")]
    Call {
        /// The step.
        what: &'static str,
        /// The kernel's answer.
        error: std::io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

/// The user named `name`, for a parent that runs as root. Read with
/// `getpwnam_r`: a settings reload may run this beside other threads.
pub fn identity(name: &str) -> Option<Identity> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some(Identity {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// Whether this process runs as root, so workers should drop to a user.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Closes inherited descriptors, drops to `identity`, bars new privileges
/// and processes, then installs the system-call filter. Called once the
/// engines are built (their start-up reads files) and before the first
/// request.
pub fn enter(identity: Option<Identity>) -> Result<(), ConfineError> {
    close_inherited();
    let check = |what: &'static str, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(ConfineError::Call {
                what,
                error: std::io::Error::last_os_error(),
            })
        }
    };
    // SAFETY: plain system calls with integer arguments or a valid struct.
    unsafe {
        if let Some(Identity { uid, gid }) = identity {
            check("setgroups", libc::setgroups(0, std::ptr::null()))?;
            check("setresgid", libc::setresgid(gid, gid, gid))?;
            check("setresuid", libc::setresuid(uid, uid, uid))?;
        }
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        check("RLIMIT_CORE", libc::setrlimit(libc::RLIMIT_CORE, &none))?;
        check("RLIMIT_NPROC", libc::setrlimit(libc::RLIMIT_NPROC, &none))?;
        // Its pipes and a little room; it opens nothing once confined.
        let few = libc::rlimit {
            rlim_cur: 8,
            rlim_max: 8,
        };
        check("RLIMIT_NOFILE", libc::setrlimit(libc::RLIMIT_NOFILE, &few))?;
        check(
            "PR_SET_NO_NEW_PRIVS",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
    }
    filter()
}

/// Everything but stdin, stdout and stderr: the parent's descriptors are
/// close-on-exec, but whatever started the parent may have left some open.
fn close_inherited() {
    // SAFETY: closing descriptors this process does not use.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
    }
}

/// System calls the engines make while running scripts (measured with
/// strace over the hostile corpus), beyond which everything fails with
/// EPERM. Starting programs, sockets, tracing and new processes or threads
/// kill the worker outright: no script has a reason to try them.
fn filter() -> Result<(), ConfineError> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let arch =
        seccompiler::TargetArch::try_from(std::env::consts::ARCH).map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    let rules = |calls: &[libc::c_long]| calls.iter().map(|&c| (c, Vec::new())).collect::<BTreeMap<_, _>>();
    let build = |rules, mismatch, matched| {
        SeccompFilter::new(rules, mismatch, matched, arch)
            .and_then(BpfProgram::try_from)
            .map_err(|e| ConfineError::Seccomp(e.to_string()))
    };
    let allowed = build(
        rules(ALLOWED),
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )?;
    let fatal = build(rules(FATAL), SeccompAction::Allow, SeccompAction::KillProcess)?;
    // The kernel applies the stricter of the two: a fatal call kills even
    // though the allow-list would only refuse it. The allow-list goes last:
    // it refuses `seccomp` itself.
    for program in [&fatal, &allowed] {
        seccompiler::apply_filter(program).map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    }
    Ok(())
}

const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    // abort() signals itself.
    libc::SYS_tgkill,
    libc::SYS_getcwd,
    // The allocator names its regions and toggles huge pages.
    libc::SYS_prctl,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

const FATAL: &[libc::c_long] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_clone,
    libc::SYS_clone3,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
];
