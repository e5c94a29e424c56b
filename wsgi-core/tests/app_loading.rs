//! `Engine::builder(..).build()` errors name what was looked for.

mod common;

use common::{app_path, start};
use wsgi_core::Engine;

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
    assert_eq!(response.status(), 200);
    assert!(
        response.text().starts_with("Hello world!"),
        "{}",
        response.text()
    );
}

#[test]
fn a_missing_chdir_directory_is_named() {
    let built = Engine::builder(app_path("slow_app.py"))
        .chdir("/nonexistent/wsgi-test-dir")
        .build();
    let message = match built {
        Ok(_) => panic!("chdir into a missing directory must fail"),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("/nonexistent/wsgi-test-dir"), "{message}");
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
