//! Spawning tests. The unit-test binary is re-executed as the "host binary": each child runs
//! one `#[test]` of this module selected with `--exact`, a test that does nothing in a normal
//! run (no marker in its environment) and plays the worker's part in a child.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::linux::testing::{become_worker, spawn_worker_with};
use super::*;
use crate::chunk::Chunk;
use crate::error::MissingModule;
use crate::input::Pulled;
use crate::pipe::Msg;
use crate::process::ids::LocalSlot;
use crate::process::wire::channels::Channels;
use crate::process::wire::frame::{FrameReader, FrameWriter};
use crate::process::wire::messages::{
    ControlFromWorker, ControlToWorker, FromWorker, ToWorker, WorkerConfig,
};

/// Marks the middle process of the orphan test.
const ROLE: &str = "WSGI_CORE_TEST_ROLE";

/// Arguments that make the test binary run only the test `name` of this module.
fn only(name: &str) -> Vec<String> {
    let module = module_path!()
        .strip_prefix("wsgi_core::")
        .expect("crate prefix");
    vec![
        "--exact".into(),
        format!("{module}::{name}"),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

fn spawn_running(threads: usize, test: &str) -> (std::process::Child, Channels) {
    let args = only(test);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, channels) = spawn_worker_with(threads, &args).expect("spawn");
    // A broken child must fail the test, not hang it.
    channels
        .control
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (child, channels)
}

fn cloexec(fd: i32) -> bool {
    // SAFETY: F_GETFD on a descriptor this process holds.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags != -1 && flags & libc::FD_CLOEXEC != 0
}

/// Worker side of `descriptors_arrive_at_3_and_the_marker_is_gone`.
#[test]
fn worker_reports_its_descriptors() {
    let Some(marker) = std::env::var_os(MARKER) else {
        return;
    };
    become_worker(marker, |channels| {
        let Channels {
            control,
            intake,
            slots,
            started,
        } = channels;
        let fds: Vec<i32> = slots.iter().map(AsRawFd::as_raw_fd).collect();
        let all_cloexec = [control.as_raw_fd(), intake.as_raw_fd()]
            .iter()
            .chain(&fds)
            .all(|&fd| cloexec(fd));
        // The host sees this through its own mapping.
        started.mark(LocalSlot::new(1), 42);
        let report = format!(
            "control={} intake={} slots={fds:?} marker={} worker={} nested_refused={} cloexec={all_cloexec}",
            control.as_raw_fd(),
            intake.as_raw_fd(),
            std::env::var_os(MARKER).is_some(),
            is_worker(),
            forbid_nested().is_err(),
        );
        FrameWriter::new(&control)
            .send(&ControlFromWorker::Ready {
                pid: std::process::id(),
                python: report,
            })
            .unwrap();
        // Echo one message per slot, tagged with the slot's index.
        for (i, slot) in slots.iter().enumerate() {
            let Ok(Some(ToWorker::Body(Pulled::Chunk(Chunk::Data(body))))) =
                FrameReader::new(slot).recv()
            else {
                return 3;
            };
            let reply = format!("{i}:{}", String::from_utf8_lossy(&body));
            FrameWriter::new(slot)
                .send(&FromWorker::Response(Msg::Data(Bytes::from(reply))))
                .unwrap();
        }
        0
    });
}

#[test]
fn descriptors_arrive_at_3_and_the_marker_is_gone() {
    let (mut child, channels) = spawn_running(3, "worker_reports_its_descriptors");
    let (pid, report) = wait_ready(&mut child, &mut FrameReader::new(&channels.control)).unwrap();
    assert_eq!(pid, child.id());
    assert_eq!(
        report,
        "control=3 intake=4 slots=[5, 6, 7] marker=false worker=true nested_refused=true cloexec=true"
    );
    assert!(channels.started.started(LocalSlot::new(1), 42));
    for (i, slot) in channels.slots.iter().enumerate() {
        slot.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        FrameWriter::new(slot)
            .send(&ToWorker::Body(Pulled::Chunk(Chunk::Data(Bytes::from(
                format!("hello{i}"),
            )))))
            .unwrap();
        let Some(FromWorker::Response(Msg::Data(echo))) = FrameReader::new(slot).recv().unwrap()
        else {
            panic!("slot {i}: no echo");
        };
        assert_eq!(
            echo,
            format!("{i}:hello{i}"),
            "slot {i} reaches worker slot {i}"
        );
    }
    assert!(child.wait().unwrap().success());
}

/// Worker side of `the_hook_hands_the_sockets_to_the_worker_code`.
#[test]
fn worker_calls_the_hook() {
    if std::env::var_os(MARKER).is_some() {
        crate::run_if_worker();
        unreachable!("run_if_worker returns only outside a worker");
    }
}

/// Starts a worker that runs the real worker code on `app`, and returns what it reports.
fn start_worker_code(app: &str) -> Result<(u32, String), Error> {
    let (mut child, channels) = spawn_running(2, "worker_calls_the_hook");
    let control = &channels.control;
    FrameWriter::new(control)
        .send(&ControlToWorker::Config(WorkerConfig::for_tests(app, 2)))
        .unwrap();
    let verdict = wait_ready(&mut child, &mut FrameReader::new(control));
    if verdict.is_err() {
        assert!(!child.wait().unwrap().success());
    }
    verdict
}

#[test]
fn the_hook_hands_the_sockets_to_the_worker_code() {
    // The app does not exist, so the worker code refuses it, with the error Python in this
    // process would have met: the same variant, not a message.
    match start_worker_code("/nonexistent/app.py") {
        Err(Error::AppFileNotFound { path, .. }) => {
            assert_eq!(path, std::path::Path::new("/nonexistent/app.py"));
        }
        other => panic!("expected a start-up failure, got {other:?}"),
    }
}

#[test]
fn a_missing_dependency_reaches_the_host_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(
        &app,
        "import wsgi_core_spawn_test_missing_dependency\n\ndef application(environ, start_response):\n    pass\n",
    )
    .unwrap();
    match start_worker_code(app.to_str().unwrap()) {
        Err(Error::AppImport {
            missing: Some(MissingModule::Dependency(name)),
            venv: None,
            sys_path,
            exception,
            ..
        }) => {
            assert_eq!(name, "wsgi_core_spawn_test_missing_dependency");
            assert_eq!(exception.type_name, "ModuleNotFoundError");
            assert!(exception.traceback.contains("Traceback"), "{exception:?}");
            assert_eq!(sys_path.first().map(String::as_str), dir.path().to_str());
        }
        other => panic!("expected the import error, got {other:?}"),
    }
}

/// Worker side of `a_worker_running_main_again_cannot_spawn_threads`: a `main` without the
/// hook runs the host's code again and reaches the spawning code.
#[test]
fn worker_without_the_hook_tries_to_spawn() {
    if std::env::var_os(MARKER).is_none() {
        return;
    }
    // SAFETY: the parent put the control socket at fd 3 and nothing else here uses it.
    let control = unsafe { UnixStream::from_raw_fd(FIRST_FD) };
    // Should the guard fail, the grandchild runs no test and exits: no fork bomb.
    let message = match spawn_worker_with(1, &["--list", "--exact", "no_such_test"]) {
        Ok(_) => "a nested worker was spawned".to_owned(),
        Err(e) => e.to_string(),
    };
    FrameWriter::new(&control)
        .send(&ControlFromWorker::StartupFailed(Box::new(
            Error::WorkerStartup(message),
        )))
        .unwrap();
    std::process::exit(0);
}

#[test]
fn a_worker_running_main_again_cannot_spawn_threads() {
    let (mut child, channels) = spawn_running(1, "worker_without_the_hook_tries_to_spawn");
    match wait_ready(&mut child, &mut FrameReader::new(&channels.control)) {
        Err(Error::WorkerStartup(message)) => assert!(
            message.contains("add `wsgi_core::run_if_worker();` as the first line of main()"),
            "{message}"
        ),
        other => panic!("expected the nested-spawn error, got {other:?}"),
    }
    child.wait().unwrap();
}

#[test]
fn a_worker_that_never_reports_is_blamed_on_the_missing_hook() {
    // The child runs the test harness's main and no test: like a main without the hook, it
    // ends without a word on the control socket.
    let (mut child, channels) =
        spawn_worker_with(1, &["--list", "--exact", "no_such_test"]).unwrap();
    let control = channels.control;
    control
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let err = wait_ready(&mut child, &mut FrameReader::new(&control)).unwrap_err();
    assert!(
        matches!(err, Error::WorkerExitedEarly { pid, .. } if pid == child.id()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("exit status 0"), "{message}");
    assert!(message.contains("wsgi_core::run_if_worker()"), "{message}");
}

/// Middle process of `a_worker_dies_with_its_parent`: starts a worker, says its pid and
/// waits to be killed.
#[test]
fn middle_process_starts_a_worker() {
    if std::env::var(ROLE).as_deref() != Ok("middle") {
        return;
    }
    let args = only("worker_that_ignores_its_control_socket");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, _channels) = spawn_worker_with(1, &args).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "worker pid {}", child.id()).unwrap();
    out.flush().unwrap();
    drop(out);
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(1);
}

/// A worker that never reads its control socket, so only the death signal can end it early.
#[test]
fn worker_that_ignores_its_control_socket() {
    let Some(marker) = std::env::var_os(MARKER) else {
        return;
    };
    become_worker(marker, |_channels| {
        std::thread::sleep(Duration::from_secs(30));
        0
    });
}

/// Whether `pid` runs (a zombie waiting for a reaper counts as gone).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

#[test]
fn a_worker_dies_with_its_parent() {
    let mut middle = Command::new(std::env::current_exe().unwrap())
        .args(only("middle_process_starts_a_worker"))
        .env(ROLE, "middle")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The worker shares the middle's stdout: read it to the end, so that no write of the
    // worker's harness fails with EPIPE and ends the worker for the wrong reason.
    let stdout = BufReader::new(middle.stdout.take().unwrap());
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // The harness's own output may share the line.
            if let Some(pid) = line.split_once("worker pid ") {
                let _ = pid_tx.send(pid.1.trim().parse::<i32>());
            }
        }
    });
    let pid = pid_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the middle process names its worker")
        .expect("a pid");
    assert!(running(pid), "worker {pid} is not running to begin with");

    middle.kill().unwrap(); // SIGKILL: no chance to clean up
    middle.wait().unwrap();
    // The bound: a host killed with SIGKILL leaves no worker 2 s later.
    let deadline = Instant::now() + Duration::from_secs(2);
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = running(pid);
    if survived {
        // SAFETY: kill(2) on the pid of the worker this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!survived, "worker {pid} outlived its killed parent by 2 s");
}

#[test]
fn exit_statuses_read_well() {
    use std::os::unix::process::ExitStatusExt;
    let segv = std::process::ExitStatus::from_raw(libc::SIGSEGV | 0x80);
    assert_eq!(
        describe_exit(segv),
        "killed by signal 11 (SIGSEGV), core dumped"
    );
    let exit1 = std::process::ExitStatus::from_raw(1 << 8);
    assert_eq!(describe_exit(exit1), "exit status 1");
}
