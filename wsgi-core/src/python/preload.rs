//! What preloading asks of the interpreter (see `crate::process::template`): keeping the
//! loaded objects out of the garbage collector's way, the threads Python knows, the fork
//! itself, and the post-fork hook.

use pyo3::prelude::*;

use crate::error::{Error, HookStage};

/// A post-fork hook, looked up and checked callable (`EngineBuilder::post_fork`).
#[derive(Debug)]
pub(crate) struct Hook {
    spec: String,
    callable: Py<PyAny>,
}

/// Imports the hook's module and finds its callable, in the interpreter that has the
/// application, so that a typo fails the start once rather than in every worker.
pub(crate) fn load_hook(spec: &str) -> Result<Hook, Error> {
    let fail = |stage, exception| Error::PostFork {
        hook: spec.to_owned(),
        stage,
        exception,
    };
    let Some((module, path)) = spec
        .split_once(':')
        .filter(|(m, c)| !m.is_empty() && !c.is_empty())
    else {
        return Err(fail(HookStage::Spec, None));
    };
    Python::attach(|py| {
        let mut object = py
            .import(module)
            .map_err(|e| fail(HookStage::Import, Some(Box::new(super::exception(py, &e)))))?
            .into_any();
        for part in path.split('.') {
            object = match object.getattr_opt(part) {
                Ok(Some(next)) => next,
                Ok(None) => return Err(fail(HookStage::Missing, None)),
                Err(e) => {
                    return Err(fail(
                        HookStage::Import,
                        Some(Box::new(super::exception(py, &e))),
                    ));
                }
            };
        }
        if !object.is_callable() {
            return Err(fail(HookStage::NotCallable, None));
        }
        Ok(Hook {
            spec: spec.to_owned(),
            callable: object.unbind(),
        })
    })
}

/// Calls the hook without arguments.
pub(crate) fn run_hook(hook: &Hook) -> Result<(), Error> {
    Python::attach(|py| {
        hook.callable
            .call0(py)
            .map(drop)
            .map_err(|e| Error::PostFork {
                hook: hook.spec.clone(),
                stage: HookStage::Call,
                exception: Some(Box::new(super::exception(py, &e))),
            })
    })
}

/// Collects the garbage the import left, then moves every object that survives into the
/// collector's permanent generation (`gc.freeze()`): a worker's collections then never
/// touch the objects it inherited, whose pages stay shared with the template instead of
/// being copied the first time the collector writes a reference count or a list link.
pub(crate) fn freeze() -> Result<(), Error> {
    Python::attach(|py| {
        let gc = py.import("gc")?;
        gc.call_method0("collect")?;
        gc.call_method0("freeze")?;
        Ok(())
    })
    .map_err(|e: PyErr| {
        Python::attach(|py| super::interpreter_error(py, super::action::FREEZE, &e))
    })
}

/// The Python threads running besides the calling one, by name.
pub(crate) fn other_threads() -> Result<Vec<String>, Error> {
    Python::attach(|py| {
        let threading = py.import("threading")?;
        let current = threading.call_method0("current_thread")?;
        let mut names = Vec::new();
        for thread in threading.call_method0("enumerate")?.try_iter()? {
            let thread = thread?;
            if !thread.is(&current) {
                names.push(thread.getattr("name")?.str()?.to_string());
            }
        }
        Ok(names)
    })
    .map_err(|e: PyErr| {
        Python::attach(|py| super::interpreter_error(py, super::action::LIST_THREADS, &e))
    })
}

/// Which side of a [`fork`] this process is on.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The parent, with the child's process id.
    Parent(u32),
    /// The child: its interpreter is reinitialised for the one thread it has.
    Child,
}

/// Forks this process as `os.fork()` does: the interpreter's locks are taken before and
/// released or reset after, and the `os.register_at_fork` hooks run (the `random` module
/// reseeds itself in the child through one). The caller must have made sure this process
/// runs no other thread: the child would have only the calling one.
pub(crate) fn fork() -> std::io::Result<Forked> {
    Python::attach(|_py| {
        // SAFETY: the GIL is held (attached above), as `PyOS_BeforeFork` requires; it runs
        // the before-fork hooks and takes the import lock, which one of the two
        // `PyOS_AfterFork_*` calls below releases.
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        // SAFETY: `fork` has no memory-safety preconditions of its own; the child may do
        // more than async-signal-safe calls because the caller checked that no other thread
        // runs (none can hold a lock the child would need), and the interpreter's own state
        // is made fit for the child by `PyOS_AfterFork_Child`.
        let pid = unsafe { libc::fork() };
        let error = std::io::Error::last_os_error();
        if pid == 0 {
            // SAFETY: in the child just forked, with the GIL held by this (its only)
            // thread, before any other Python call, as the function requires.
            unsafe { pyo3::ffi::PyOS_AfterFork_Child() };
            return Ok(Forked::Child);
        }
        // SAFETY: in the parent, with the GIL held, after `PyOS_BeforeFork` above, also
        // when the fork failed.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() };
        match u32::try_from(pid) {
            Ok(pid) => Ok(Forked::Parent(pid)),
            Err(_) => Err(error),
        }
    })
}
