//! `Engine::builder(..).build()` errors name what was looked for.

mod common;

use common::{app_path, start};
use wsgi_core::{Engine, Error, MissingModule};

fn build_error(spec: &str) -> String {
    match Engine::builder(spec).threads(1).build() {
        Ok(_) => panic!("{spec} loaded, but it should have failed"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_missing_file_is_named() {
    let message = build_error(&app_path("does_not_exist_anywhere.py"));
    assert!(message.contains("does_not_exist_anywhere.py"), "{message}");
}

#[test]
fn a_missing_module_is_named() {
    let message = build_error("no_such_module_for_wsgi_tests:application");
    assert!(
        message.contains("no_such_module_for_wsgi_tests"),
        "{message}"
    );
}

#[test]
fn a_missing_attribute_is_named() {
    let message = build_error(&format!("{}:no_such_callable", app_path("environ_app.py")));
    assert!(message.contains("no_such_callable"), "{message}");
    assert!(message.contains("environ_app"), "{message}");
}

#[test]
fn an_import_error_carries_the_python_traceback() {
    let message = build_error(&app_path("broken_import.py"));
    assert!(message.contains("broken_import"), "{message}");
    assert!(message.contains("Traceback"), "{message}");
    assert!(
        message.contains("RuntimeError: fixture-import-failure-4711"),
        "{message}"
    );
    assert!(
        message.contains("_explode"),
        "the traceback should show the failing frame: {message}"
    );
}

#[test]
fn a_syntax_error_names_the_file() {
    let message = build_error(&app_path("bad_syntax.py"));
    assert!(message.contains("bad_syntax.py"), "{message}");
    assert!(message.contains("SyntaxError"), "{message}");
}

#[test]
fn a_non_callable_attribute_is_named_with_its_type() {
    let message = build_error(&format!("{}:application", app_path("not_callable.py")));
    assert!(message.contains("application"), "{message}");
    assert!(message.contains("int"), "{message}");
    assert!(message.contains("callable"), "{message}");
    // The default callable name is `application`, so this fails the same way.
    let message = build_error(&app_path("not_callable.py"));
    assert!(message.contains("application"), "{message}");
}

#[test]
fn an_empty_spec_is_rejected() {
    let message = build_error("");
    assert!(!message.is_empty());
}

#[test]
fn a_file_without_a_callable_name_uses_application() {
    let server = start(&app_path("slow_app.py"), |b| b, "");
    assert_eq!(server.get("/?tag=default").text(), "done default");
}

#[test]
fn a_module_spec_loads_from_sys_path() {
    // wsgiref ships a WSGI callable, so no fixture needs to be on sys.path.
    let server = start("wsgiref.simple_server:demo_app", |b| b, "");
    let response = server.get("/");
    assert_eq!(response.status, 200);
    assert!(
        response.text().starts_with("Hello world!"),
        "{}",
        response.text()
    );
}

#[test]
fn a_missing_base_directory_is_named() {
    let built = Engine::builder("slow_app.py")
        .base_dir("/nonexistent/wsgi-test-dir")
        .build();
    match built {
        Ok(_) => panic!("a missing base directory must fail"),
        Err(error @ Error::BaseDir { .. }) => {
            let message = error.to_string();
            assert!(message.contains("/nonexistent/wsgi-test-dir"), "{message}");
            let source = std::error::Error::source(&error).expect("the io::Error as source");
            assert!(source.is::<std::io::Error>(), "{source:?}");
        }
        Err(other) => panic!("expected Error::BaseDir, got {other:?}"),
    }
}

#[test]
fn the_application_is_resolved_from_the_base_directory_without_changing_directory() {
    let cwd = std::env::current_dir().unwrap();
    let apps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps");
    // Relative to the base directory only: the working directory (the crate's) has no
    // `environ_app.py`.
    let server = start("environ_app.py", |b| b.base_dir(&apps), "");
    assert_eq!(server.get("/").status, 200);
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd,
        "build() changed directory"
    );
}

#[test]
fn a_missing_file_names_the_base_directory_it_was_looked_for_in() {
    let apps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps");
    match Engine::builder("no_such_app.py").base_dir(&apps).build() {
        Err(Error::AppFileNotFound { path, base_dir }) => {
            assert_eq!(path, std::path::Path::new("no_such_app.py"));
            assert_eq!(base_dir, apps);
        }
        Err(other) => panic!("expected Error::AppFileNotFound, got {other:?}"),
        Ok(_) => panic!("no_such_app.py loaded"),
    }
}

#[test]
fn an_import_error_keeps_the_exception_and_the_missing_module() {
    let error = match Engine::builder("no_such_module_for_wsgi_tests:application")
        .threads(1)
        .build()
    {
        Err(error) => error,
        Ok(_) => panic!("a missing module loaded"),
    };
    let message = error.to_string();
    for flag in ["--chdir", "--venv"] {
        assert!(
            !message.contains(flag),
            "a library message names {flag}: {message}"
        );
    }
    let source = std::error::Error::source(&error).map(ToString::to_string);
    let Error::AppImport {
        missing,
        exception,
        sys_path,
        ..
    } = error
    else {
        panic!("expected Error::AppImport, got {error:?}");
    };
    assert_eq!(
        missing,
        Some(MissingModule::App("no_such_module_for_wsgi_tests".into()))
    );
    assert_eq!(exception.type_name, "ModuleNotFoundError");
    // Imported from Rust, the module has no Python frames: the traceback is its last line.
    assert!(
        exception.traceback.ends_with(&exception.message),
        "{exception:?}"
    );
    assert!(!sys_path.is_empty());
    assert!(
        source.is_some_and(|s| s.starts_with("ModuleNotFoundError: ")),
        "the exception is the error's source"
    );
}

#[test]
fn preload_and_its_hook_are_refused_without_worker_processes_or_a_callable() {
    let config_error = |builder: wsgi_core::EngineBuilder| match builder.build() {
        Err(Error::Config {
            option, expected, ..
        }) => (option, expected),
        Err(other) => panic!("expected Error::Config, got {other:?}"),
        Ok(_) => panic!("accepted"),
    };
    let app = || Engine::builder(app_path("slow_app.py"));
    assert_eq!(config_error(app().preload(true)).0, "preload");
    assert_eq!(config_error(app().post_fork("hooks:setup")).0, "post_fork");
    let (option, expected) = config_error(app().processes(2).post_fork("hooks"));
    assert_eq!((option, expected), ("post_fork", "`module:callable`"));
    let (option, _) = config_error(app().processes(2).preload(true).threads(251));
    assert_eq!(option, "threads");
}

#[test]
fn a_zero_count_is_a_structured_config_error() {
    match Engine::builder(app_path("slow_app.py")).threads(0).build() {
        Err(Error::Config { option, value, .. }) => {
            assert_eq!(option, "threads");
            assert_eq!(value, "0");
        }
        Err(other) => panic!("expected Error::Config, got {other:?}"),
        Ok(_) => panic!("0 threads accepted"),
    }
    match Engine::builder(app_path("slow_app.py"))
        .trusted_proxies(["10.0.0.0/99"])
        .build()
    {
        Err(Error::TrustedProxy { entry, .. }) => assert_eq!(entry, "10.0.0.0/99"),
        Err(other) => panic!("expected Error::TrustedProxy, got {other:?}"),
        Ok(_) => panic!("a bad proxy accepted"),
    }
}

#[test]
fn engines_built_concurrently_from_one_file_all_load_it() {
    // No other test loads this file, so every build below races for the first import.
    let app = app_path("slow_import.py");
    let barrier = std::sync::Barrier::new(4);
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    Engine::builder(app.as_str())
                        .threads(1)
                        .build()
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("builder thread"))
            .collect()
    });
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "concurrent builds failed: {failures:?}"
    );
}
