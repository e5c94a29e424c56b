//! `wsgi-serve` end to end with virtualenvs: a fresh venv, made by the embedded Python, with a
//! package installed from a wheel the test builds itself (no network), is used through
//! `VIRTUAL_ENV` and through `--venv`, without `PYTHONPATH`; broken venvs are refused with a
//! message that says how to fix them.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{python, serve_command};
use test_support::serve::{Server, assert_fails_with, start};
use test_support::temp::temp_dir;

/// Writes a minimal pure-Python wheel, `wsgitestpkg-1.0-py3-none-any.whl`, into `dir`.
const BUILD_WHEEL: &str = r#"
import base64, hashlib, sys, zipfile

dist = "wsgitestpkg-1.0.dist-info"
files = {
    "wsgitestpkg/__init__.py": "VALUE = 'installed-from-a-local-wheel'\n",
    dist + "/METADATA": "Metadata-Version: 2.1\nName: wsgitestpkg\nVersion: 1.0\n",
    dist + "/WHEEL": "Wheel-Version: 1.0\nGenerator: wsgi-rs-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append(dist + "/RECORD,,")
files[dist + "/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(sys.argv[1] + "/wsgitestpkg-1.0-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(name, text)
"#;

fn run(command: &mut Command, what: &str) {
    let output = command
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("VIRTUAL_ENV")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A venv shared by the tests of this file (creating one with pip takes seconds): made by
/// the embedded Python, with the wheel installed, and a `.pth` file in its site-packages
/// that adds a directory and runs an `import` line.
struct Venv {
    root: PathBuf,
}

fn venv() -> &'static Venv {
    static VENV: OnceLock<Venv> = OnceLock::new();
    VENV.get_or_init(|| {
        // Under target/ rather than a self-removing temporary directory: nothing drops a
        // static, and a fixed place means each run replaces the last one's instead of
        // leaving another copy behind.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-venv-test");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let root = dir.join("venv");
        let py = &python().program;
        run(
            Command::new(py).arg("-m").arg("venv").arg(&root),
            "create a virtualenv",
        );
        run(
            Command::new(py).args(["-c", BUILD_WHEEL]).arg(&dir),
            "build the test wheel",
        );
        run(
            Command::new(root.join("bin/pip"))
                .args(["install", "--no-index", "--no-cache-dir", "--quiet"])
                .arg(dir.join("wsgitestpkg-1.0-py3-none-any.whl")),
            "pip install the test wheel",
        );
        let extra = dir.join("pth-extra");
        std::fs::create_dir_all(&extra).unwrap();
        std::fs::write(
            extra.join("wsgipthmod.py"),
            "VALUE = 'added-by-a-pth-file'\n",
        )
        .unwrap();
        let site_packages = root
            .join("lib")
            .join(format!("python{}", python().major_minor))
            .join("site-packages");
        std::fs::write(
            site_packages.join("wsgi_test_extra.pth"),
            format!(
                "{}\nimport os; os.environ['WSGI_TEST_PTH_RAN'] = 'yes'\n",
                extra.display()
            ),
        )
        .unwrap();
        Venv { root }
    })
}

/// The `key=value` lines of the probe app's answer.
fn probe(server: &Server) -> HashMap<String, String> {
    let (status, body) = server.get("/");
    assert_eq!(status, 200, "{body}");
    test_support::key_values(&body)
}

fn assert_runs_in(facts: &HashMap<String, String>, root: &Path) {
    let root = root.to_str().unwrap();
    assert_eq!(facts["prefix"], root, "{facts:?}");
    assert_ne!(facts["base_prefix"], root, "{facts:?}");
    assert!(facts["executable"].starts_with(root), "{facts:?}");
    assert_eq!(
        facts["package"], "installed-from-a-local-wheel",
        "{facts:?}"
    );
    assert_eq!(facts["pth_module"], "added-by-a-pth-file", "{facts:?}");
    assert_eq!(facts["pth_ran"], "yes", "{facts:?}");
    assert_eq!(facts["pythonpath"], "", "{facts:?}");
}

#[test]
fn virtual_env_activates_the_venv() {
    let venv = venv();
    let mut command = serve_command();
    command.env("VIRTUAL_ENV", &venv.root).arg("probe.py");
    let server = start(command);
    assert_runs_in(&probe(&server), &venv.root);
    let log = server.stderr_with("(from $VIRTUAL_ENV)");
    assert!(log.contains("(from $VIRTUAL_ENV)"), "{log}");
}

#[test]
fn the_venv_option_activates_the_venv() {
    let venv = venv();
    let mut command = serve_command();
    command.arg("--venv").arg(&venv.root).arg("probe.py");
    let server = start(command);
    assert_runs_in(&probe(&server), &venv.root);
}

#[test]
fn without_a_venv_its_packages_are_not_importable() {
    let server = start({
        let mut command = serve_command();
        command.arg("probe.py");
        command
    });
    let facts = probe(&server);
    assert!(facts["package"].starts_with("ImportError"), "{facts:?}");
    assert_eq!(facts["prefix"], facts["base_prefix"], "{facts:?}");
}

/// A user base (`PYTHONUSERBASE`) whose site-packages holds a `.pth` file with an `import`
/// line, as `pip install --user` of a package with such a hook leaves.
fn user_base_with_a_pth() -> test_support::temp::TempDir {
    let dir = temp_dir("user-base");
    let site_packages = dir
        .path()
        .join(format!("lib/python{}/site-packages", python().major_minor));
    std::fs::create_dir_all(&site_packages).unwrap();
    std::fs::write(
        site_packages.join("wsgi_test_user.pth"),
        "import os; os.environ['WSGI_TEST_USER_PTH_RAN'] = 'yes'\n",
    )
    .unwrap();
    dir
}

/// The venv's own `python` never runs the `.pth` files of the user's (or the base
/// installation's) site-packages when the venv excludes them: neither does the embedded
/// interpreter, which starts as that `python`. The control run without a venv shows the
/// file would run.
#[test]
fn a_venv_runs_no_pth_file_from_outside_it() {
    let user_base = user_base_with_a_pth();
    let serve = |venv: Option<&Path>, args: &[&str]| {
        let mut command = serve_command();
        command.env("PYTHONUSERBASE", user_base.path()).args(args);
        if let Some(venv) = venv {
            command.arg("--venv").arg(venv);
        }
        start({
            command.arg("probe.py");
            command
        })
    };
    let without = probe(&serve(None, &[]));
    assert_eq!(without["user_pth_ran"], "yes", "{without:?}");
    let venv = venv();
    let with = probe(&serve(Some(&venv.root), &[]));
    assert_runs_in(&with, &venv.root);
    assert_eq!(with["user_pth_ran"], "", "{with:?}");
    let in_a_worker = probe(&serve(Some(&venv.root), &["--processes", "1"]));
    assert_runs_in(&in_a_worker, &venv.root);
    assert_eq!(in_a_worker["user_pth_ran"], "", "{in_a_worker:?}");
}

#[test]
fn version_reports_the_venv() {
    let venv = venv();
    let output = serve_command()
        .arg("--version")
        .arg("--venv")
        .arg(&venv.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!(
            "virtualenv: {} (from --venv)",
            venv.root.display()
        )),
        "{text}"
    );
}

#[test]
fn a_missing_venv_is_refused() {
    let mut command = serve_command();
    command.args(["--venv", "/nonexistent/wsgi-test-venv", "probe.py"]);
    assert_fails_with(
        command,
        &["/nonexistent/wsgi-test-venv", "does not exist", "-m venv"],
    );
}

#[test]
fn a_stale_virtual_env_says_where_it_came_from() {
    let mut command = serve_command();
    command
        .env("VIRTUAL_ENV", "/nonexistent/wsgi-test-venv")
        .arg("probe.py");
    assert_fails_with(command, &["$VIRTUAL_ENV", "does not exist", "deactivate"]);
}

#[test]
fn a_directory_that_is_not_a_venv_is_refused() {
    let dir = temp_dir("not-a-venv");
    let mut command = serve_command();
    command.arg("--venv").arg(dir.path()).arg("probe.py");
    assert_fails_with(command, &["pyvenv.cfg", "not a virtualenv", "-m venv"]);
}

#[test]
fn an_incomplete_venv_is_refused() {
    let dir = temp_dir("incomplete-venv");
    std::fs::write(
        dir.path().join("pyvenv.cfg"),
        format!("home = /usr/bin\nversion = {}.0\n", python().major_minor),
    )
    .unwrap();
    let mut command = serve_command();
    command.arg("--venv").arg(dir.path()).arg("probe.py");
    assert_fails_with(command, &["site-packages", "is missing", "--clear"]);
}

#[test]
fn a_venv_for_another_python_is_refused_with_both_versions() {
    let (major, minor) = python().major_minor.split_once('.').unwrap();
    let other = format!("{major}.{}", minor.parse::<u32>().unwrap() + 1);
    let dir = temp_dir("other-venv");
    let home = dir.path().join("base/bin");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(format!("python{other}")), "").unwrap();
    std::fs::create_dir_all(dir.path().join(format!("lib/python{other}/site-packages"))).unwrap();
    std::fs::write(
        dir.path().join("pyvenv.cfg"),
        format!("home = {}\nversion = {other}.1\n", home.display()),
    )
    .unwrap();
    let mut command = serve_command();
    command.arg("--venv").arg(dir.path()).arg("probe.py");
    let rebuild = format!(
        "PYO3_PYTHON={}",
        home.join(format!("python{other}")).display()
    );
    assert_fails_with(
        command,
        &[
            &format!("made for Python {other}"),
            &format!("embeds Python {}", python().major_minor),
            &rebuild,
            "-m venv --clear",
        ],
    );
}
