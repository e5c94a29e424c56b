//! `wsgi-serve --preload`: a template process imports the application once and the worker
//! processes are forked from it; new code still loads on `tmp/restart.txt`, through a new
//! template, and the template goes with everything else on SIGTERM.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{alive, apps, children, serve_app, serve_command};
use test_support::serve::{Server, assert_fails_with, free_port, start};
use test_support::temp::{TempDir, temp_dir};
use test_support::wire::{Request, send};

/// What `preload_app.py` answers.
#[derive(Debug)]
struct Answer {
    pid: u32,
    parent: u32,
    importer: u32,
    hooked: Option<u32>,
    version: String,
}

fn parse(body: &str) -> Answer {
    let fields: Vec<&str> = body.split(' ').collect();
    let number = |i: usize| {
        fields[i]
            .parse::<u32>()
            .unwrap_or_else(|_| panic!("{body:?}"))
    };
    Answer {
        pid: number(0),
        parent: number(1),
        importer: number(2),
        hooked: fields[3].parse().ok(),
        version: fields[4].to_owned(),
    }
}

fn answer(server: &Server) -> Answer {
    let (status, body) = server.get("/");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// A directory of its own holding `preload_app.py` and a `tmp/`, to change the code in.
fn preload_dir() -> TempDir {
    let dir = temp_dir("preload");
    std::fs::copy(
        apps().join("preload_app.py"),
        dir.path().join("preload_app.py"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

/// `wsgi-serve --processes 2 --preload --post-fork preload_app:after_fork` in `dir`, each
/// import of the application recorded in `dir/imports.log`.
fn preloaded(dir: &TempDir, extra: &[&str]) -> Server {
    let mut command: Command = serve_command();
    command
        .args(["--server", "axum", "--processes", "2", "--threads", "2"])
        .args(["--preload", "--post-fork", "preload_app:after_fork"])
        .args(extra)
        .arg("preload_app.py")
        .current_dir(dir.path())
        .env("PRELOAD_IMPORT_LOG", dir.path().join("imports.log"));
    start(command)
}

fn imports(dir: &TempDir) -> Vec<u32> {
    std::fs::read_to_string(dir.path().join("imports.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

/// One answer from each of `n` different workers: slow requests are sent four at a time
/// (two workers of two threads), as a request goes to the worker with the most idle
/// threads.
fn from_workers(server: &Server, n: usize) -> Vec<Answer> {
    let mut seen = BTreeSet::new();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let bodies: Vec<(u16, String)> = std::thread::scope(|s| {
            let sent: Vec<_> = (0..4).map(|_| s.spawn(|| server.get("/slow"))).collect();
            sent.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (status, body) in bodies {
            assert_eq!(status, 200, "{body}");
            let answer = parse(&body);
            if seen.insert(answer.pid) {
                answers.push(answer);
            }
        }
        if seen.len() >= n {
            return answers;
        }
    }
    panic!("fewer than {n} workers answered: {answers:?}");
}

/// Waits up to 10 s for `done`.
fn eventually(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn workers_are_forked_from_the_template_that_imported_the_application_once() {
    let dir = preload_dir();
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = preloaded(&dir, &["--metrics-bind", &metrics]);
    let answers = from_workers(&server, 2);
    let template = answers[0].parent;
    assert_ne!(
        template,
        server.pid(),
        "the workers' parent is not the host"
    );
    assert_eq!(
        children(server.pid()),
        BTreeSet::from([template]),
        "the host's one child is the template"
    );
    let workers: BTreeSet<u32> = answers.iter().map(|a| a.pid).collect();
    assert_eq!(children(template), workers, "the template's children serve");
    for answer in &answers {
        assert_eq!(answer.parent, template, "{answer:?}");
        assert_eq!(
            answer.importer, template,
            "imported by the template: {answer:?}"
        );
        assert_eq!(
            answer.hooked,
            Some(answer.pid),
            "the post-fork hook ran in the worker itself: {answer:?}"
        );
    }
    assert_eq!(
        imports(&dir),
        vec![template],
        "imported once, by the template"
    );
    let log = server.stderr_with("forked from the template");
    assert!(log.contains("forked=true"), "{log}");
    let response = send(metrics.parse().unwrap(), &Request::new("GET", "/metrics"));
    let text = String::from_utf8_lossy(&response.body);
    for worker in 0..2 {
        let line = format!("wsgi_worker_start_seconds{{worker=\"{worker}\",forked=\"1\"}} ");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

#[test]
fn a_worker_segfault_costs_its_request_and_a_new_worker_is_forked() {
    let dir = preload_dir();
    let server = preloaded(&dir, &[]);
    let template = answer(&server).parent;
    let (status, body) = server.get("/segv");
    assert_eq!(status, 502, "{body}");
    server.stderr_with("worker process died: killed by signal 11 (SIGSEGV)");
    let answers = from_workers(&server, 2);
    for answer in &answers {
        assert_eq!(answer.parent, template, "forked again: {answer:?}");
        assert_eq!(answer.hooked, Some(answer.pid), "{answer:?}");
    }
    assert_eq!(imports(&dir).len(), 1, "no new import for a crash");
}

#[test]
fn a_failing_post_fork_hook_is_reported_like_an_import_error() {
    for extra in [&["--preload"][..], &[]] {
        let mut options = vec![
            "--processes",
            "2",
            "--post-fork",
            "preload_app:failing_hook",
        ];
        options.extend_from_slice(extra);
        assert_fails_with(
            serve_app("axum", &options, "preload_app.py"),
            &[
                "the post-fork hook preload_app:failing_hook raised an exception",
                "Traceback",
                "RuntimeError: the database is unreachable, as the test asked",
                "hint: check the --post-fork hook",
            ],
        );
    }
    assert_fails_with(
        serve_app(
            "axum",
            &[
                "--processes",
                "2",
                "--preload",
                "--post-fork",
                "preload_app:no_hook",
            ],
            "preload_app.py",
        ),
        &["the post-fork hook preload_app:no_hook does not exist in its module"],
    );
}

#[test]
fn an_application_that_starts_a_thread_at_import_is_refused_with_the_fix() {
    assert_fails_with(
        serve_app(
            "axum",
            &["--processes", "2", "--preload"],
            "thread_at_import_app.py",
        ),
        &[
            "started 1 other thread(s) while it was imported",
            "poller (Python)",
            "hint: start the threads in a --post-fork MODULE:CALLABLE hook, or run without --preload",
        ],
    );
}

/// Sends requests from `clients` threads until `done`; returns the failures.
fn load_while(server: &Server, clients: usize, done: impl Fn() -> bool + Sync) -> Vec<String> {
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                while !done() {
                    let response = send(server.addr, &Request::new("GET", "/"));
                    if response.status != 200 {
                        failures.lock().unwrap().push(format!(
                            "{} {}",
                            response.status,
                            String::from_utf8_lossy(&response.body)
                        ));
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

fn set_version(dir: &TempDir, code: impl Fn(&str) -> String) {
    let app = dir.path().join("preload_app.py");
    let text = std::fs::read_to_string(&app).unwrap();
    std::fs::write(&app, code(&text)).unwrap();
    std::fs::write(dir.path().join("tmp/restart.txt"), b"").unwrap();
}

#[test]
fn touching_restart_txt_loads_the_new_code_through_a_new_template() {
    let dir = preload_dir();
    let server = preloaded(&dir, &[]);
    let old = from_workers(&server, 2);
    let old_template = old[0].parent;
    assert!(old.iter().all(|a| a.version == "first"), "{old:?}");
    let touched = AtomicBool::new(false);
    let started = Instant::now();
    let failures = load_while(&server, 2, || {
        if !touched.swap(true, Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(300));
            set_version(&dir, |code| {
                code.replace("VERSION = \"first\"", "VERSION = \"second\"")
            });
        }
        server
            .stderr()
            .lines()
            .filter(|l| l.contains("replaced worker process ended"))
            .count()
            >= 2
            || started.elapsed() > Duration::from_secs(30)
    });
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "requests failed during the reload"
    );
    let new = from_workers(&server, 2);
    let new_template = new[0].parent;
    assert_ne!(new_template, old_template, "{}", server.stderr());
    for answer in &new {
        assert_eq!(answer.version, "second", "{answer:?}");
        assert_eq!(answer.parent, new_template, "{answer:?}");
        assert_eq!(answer.importer, new_template, "{answer:?}");
        assert_eq!(answer.hooked, Some(answer.pid), "{answer:?}");
    }
    assert_eq!(imports(&dir), vec![old_template, new_template]);
    assert!(
        eventually(|| !alive(old_template)),
        "the old template exits once its workers have\n{}",
        server.stderr()
    );
}

#[test]
fn a_new_template_that_fails_to_import_leaves_the_old_workers_serving() {
    let dir = preload_dir();
    let server = preloaded(&dir, &[]);
    let old: BTreeSet<u32> = from_workers(&server, 2).iter().map(|a| a.pid).collect();
    set_version(&dir, |code| {
        format!("import wsgi_no_such_module_for_the_test\n{code}")
    });
    let log = server.stderr_with("the new code failed to load in a new template process");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line\n{log}");
    assert!(log.contains("wsgi_no_such_module_for_the_test"), "{log}");
    for _ in 0..6 {
        let answer = answer(&server);
        assert!(
            old.contains(&answer.pid),
            "{answer:?} is not one of {old:?}"
        );
        assert_eq!(answer.version, "first");
    }
}

#[test]
fn workers_serve_on_when_the_template_dies_and_a_new_one_replaces_it() {
    let dir = preload_dir();
    let server = preloaded(&dir, &[]);
    let old = from_workers(&server, 2);
    let template = old[0].parent;
    let killed = Command::new("kill")
        .args(["-KILL", &template.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server.stderr_with("the template process died");
    for _ in 0..4 {
        let answer = answer(&server);
        assert!(old.iter().any(|a| a.pid == answer.pid), "{answer:?}");
    }
    server.stderr_with("a new template process loaded the application");
    // A crash's replacement is forked from the new template.
    let (status, _) = server.get("/segv");
    assert_eq!(status, 502);
    assert!(
        eventually(|| {
            let answer = answer(&server);
            answer.parent != template && answer.parent != server.pid()
        }),
        "{}",
        server.stderr()
    );
}

/// Asserts that every one of `processes` has exited, naming those left behind.
fn assert_all_exit(processes: &BTreeSet<u32>) {
    assert!(
        eventually(|| processes.iter().all(|&pid| !alive(pid))),
        "left behind: {:?}",
        processes
            .iter()
            .filter(|&&pid| alive(pid))
            .collect::<Vec<_>>()
    );
}

#[test]
fn sigterm_stops_the_template_and_its_workers() {
    let dir = preload_dir();
    let mut server = preloaded(&dir, &[]);
    let template = answer(&server).parent;
    let mut processes = children(template);
    assert_eq!(processes.len(), 2, "{processes:?}");
    processes.insert(template);
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        server.stderr()
    );
    assert_all_exit(&processes);
    let log = server.stderr();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn nothing_outlives_a_killed_host() {
    let dir = preload_dir();
    let mut server = preloaded(&dir, &[]);
    let template = answer(&server).parent;
    let mut processes = children(template);
    processes.insert(template);
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(5));
    assert_all_exit(&processes);
}

#[test]
fn sighup_loads_the_new_code_through_a_new_template() {
    let dir = preload_dir();
    let server = preloaded(&dir, &["--no-restart-file"]);
    let old_template = answer(&server).parent;
    let app = dir.path().join("preload_app.py");
    let code = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        code.replace("VERSION = \"first\"", "VERSION = \"hup\""),
    )
    .unwrap();
    server.signal("HUP");
    server.stderr_with("reason=\"signal\"");
    assert!(
        eventually(|| {
            let answer = answer(&server);
            answer.version == "hup" && answer.parent != old_template
        }),
        "{}",
        server.stderr()
    );
}

// --max-rss with --preload: a forked worker's memory is what it does not share.

/// `wsgi-serve --preload --processes 2 --max-rss 60 --min-lifetime 0` on
/// `preload_memory_app.py` (80 MiB kept from its import), and its metrics' address. No
/// minimum lifetime: a worker over the limit is replaced at its first check.
fn preloaded_memory() -> (Server, std::net::SocketAddr) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let options = [
        "--processes",
        "2",
        "--threads",
        "2",
        "--preload",
        "--max-rss",
        "60",
        "--min-lifetime",
        "0",
        "--metrics-bind",
        &metrics,
    ];
    let server = start(serve_app("axum", &options, "preload_memory_app.py"));
    (server, metrics.parse().unwrap())
}

/// A `GET` of `path`: the answering worker's pid and its private memory in MiB.
fn pid_private_mib(server: &Server, path: &str) -> (u32, u64) {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "{body}\n{}", server.stderr());
    let (pid, private) = body.split_once(' ').expect(&body);
    (pid.parse().unwrap(), private.parse::<u64>().unwrap() >> 20)
}

/// The sum over the workers of the `/metrics` series `name` whose labels contain `label`.
fn metric_sum(metrics: std::net::SocketAddr, name: &str, label: &str) -> u64 {
    let response = test_support::wire::get(metrics, "/metrics");
    assert_eq!(response.status, 200);
    response
        .text()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The resident memory of `pid` in MiB (`statm`, what `--max-rss` compared before).
fn resident_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split(' ').nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| (pages * 4096) >> 20)
}

#[test]
fn preloaded_workers_over_max_rss_only_by_what_they_share_are_not_replaced() {
    // Each worker has the template's 80 MiB resident, over the 60 MiB limit, and a few MiB
    // of its own. Compared by resident memory, each was replaced at its first check, and
    // every new one again after 2 s, 4 s ... with an error that the application cannot meet
    // the limit: replacements that free nothing.
    let (server, metrics) = preloaded_memory();
    let mut pids = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let (pid, private) = pid_private_mib(&server, "/");
        pids.insert(pid);
        assert!(private < 60, "worker {pid} has {private} MiB of its own");
        assert!(
            resident_mib(pid) >= 80,
            "the template's pages are resident in worker {pid}, {} MiB",
            resident_mib(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    assert_eq!(
        metric_sum(metrics, "wsgi_worker_restarts_total", "reason=\"rss\""),
        0,
        "{log}"
    );
    assert!(!log.contains("over max_rss"), "{log}");
    assert!(pids.len() <= 2, "replaced: {pids:?}\n{log}");
    // What the limit compares, and the metric shows: the private memory.
    let gauge = metric_sum(metrics, "wsgi_worker_rss_bytes", "worker=");
    assert!(gauge > 0 && gauge < 2 * (60 << 20), "{gauge}\n{log}");
}

#[test]
fn a_preloaded_worker_that_grows_its_own_memory_past_max_rss_is_replaced() {
    // 4 MiB of its own per `/grow`: a worker passes 60 MiB private after about 14 of them,
    // and is replaced, by a worker forked from the template; no request fails meanwhile.
    let (server, metrics) = preloaded_memory();
    let mut pids = BTreeSet::new();
    let mut peak = 0;
    for _ in 0..80 {
        let (pid, private) = pid_private_mib(&server, "/grow");
        pids.insert(pid);
        peak = peak.max(private);
    }
    let log = server.stderr();
    // 320 MiB grown over two workers: each would have passed 150 MiB of its own.
    let replaced = metric_sum(metrics, "wsgi_worker_restarts_total", "reason=\"rss\"");
    assert!(replaced >= 2, "{replaced} replaced\n{log}");
    assert!(pids.len() >= 3, "{pids:?}\n{log}");
    assert!(count_forked(&log) >= 2 + 2, "{log}");
    // The limit and what the requests grow while the report travels to the host.
    assert!(
        peak <= 60 + 24,
        "a worker reached {peak} MiB of its own\n{log}"
    );
}

/// Workers the log says were forked from the template.
fn count_forked(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("forked from the template"))
        .count()
}
