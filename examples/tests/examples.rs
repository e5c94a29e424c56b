//! The runnable examples, served and spoken to: their own routers, not copies, are compiled
//! into this test as modules. And the README's mounting and framework snippets, which must
//! quote the examples and their apps word for word: so they compile, and run, here too.
//!
//! `two_apps` serves the djdemo Django project; it is the only Django project in this
//! binary, as Django's settings are process-wide.

mod common;

// Their `main`s are for `cargo run`; their `pub` items are for the README's readers.
#[allow(dead_code, unreachable_pub)]
#[path = "../mount_axum.rs"]
mod mount_axum;

#[allow(dead_code, unreachable_pub)]
#[path = "../mount_actix.rs"]
mod mount_actix;

#[allow(dead_code, unreachable_pub)]
#[path = "../two_apps.rs"]
mod two_apps;

use std::sync::OnceLock;

use test_support::hosts::{Server, serve_actix, serve_axum};
use test_support::wire::{Framing, Request, contains, send};
use wsgi_core::Engine;

fn flask() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("flask", mount_axum::FLASK_APP, 2))
        .clone()
}

fn django() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("django", two_apps::DJANGO_APP, 2))
        .clone()
}

/// What both mount examples serve: Rust at `/` and `/health`, Flask under `/legacy`.
fn check_rust_and_flask_share_the_port(server: &Server) {
    let get = |target: &str| send(server.addr, &Request::get(target));

    let home = get("/");
    home.expect(200, "text/plain");
    assert_eq!(home.text(), "Hello from Rust. Flask is at /legacy/\n");
    assert_eq!(get("/health").text(), "ok\n");

    let page = get("/legacy/");
    page.expect(200, "text/html");
    let text = page.text();
    assert!(text.contains("mounted at <code>/legacy</code>"), "{text}");
    assert!(
        text.contains("href=\"/legacy/api/hello?name=Rust\""),
        "url_for links carry the mount: {text}"
    );

    let hello = get("/legacy/api/hello?name=Ann");
    hello.expect(200, "application/json");
    assert_eq!(
        hello.json(),
        serde_json::json!({
            "message": "Hello, Ann!",
            "mounted_at": "/legacy",
            "link": "/legacy/api/hello?name=Ann",
        })
    );

    let countdown = get("/legacy/stream?from=2");
    countdown.expect(200, "text/plain");
    assert_eq!(countdown.framing, Framing::Chunked);
    assert_eq!(countdown.text(), "2...\n1...\nliftoff\n");

    // Flask's own 404 inside the mount, the Rust router's outside it.
    let flask_404 = get("/legacy/nothing");
    assert_eq!(flask_404.status, 404);
    assert!(contains(&flask_404.body, "Not Found"), "{flask_404:?}");
    assert_eq!(get("/legacyx").status, 404);
    assert_eq!(get("/nothing").status, 404);
}

#[test]
fn mount_axum_serves_rust_routes_and_flask_on_one_port() {
    let Some(flask) = flask() else { return };
    let server = serve_axum(|_| mount_axum::router(flask));
    check_rust_and_flask_share_the_port(&server);
}

#[test]
fn mount_actix_serves_rust_routes_and_flask_on_one_port() {
    let Some(flask) = flask() else { return };
    let server = serve_actix(move |config| mount_actix::routes(config, &flask));
    check_rust_and_flask_share_the_port(&server);
}

#[test]
fn two_apps_serves_flask_and_django_side_by_side() {
    let (Some(flask), Some(django)) = (flask(), django()) else {
        return;
    };
    let server = serve_axum(|_| two_apps::router(flask, django));
    let get = |target: &str| send(server.addr, &Request::get(target));

    let index = get("/");
    index.expect(200, "text/html");
    assert!(contains(&index.body, "href=\"/django/\""));

    // Interleaved, so each app runs while the other has requests in its own threads.
    for _ in 0..2 {
        let hello = get("/flask/api/hello?name=Django");
        hello.expect(200, "application/json");
        assert_eq!(hello.json()["mounted_at"], "/flask");

        let status = get("/django/api/status/");
        status.expect(200, "application/json");
        let status = status.json();
        assert_eq!(status["script_name"], "/django");
        assert_eq!(status["guestbook_url"], "/django/guestbook/");
    }

    let home = get("/django/");
    home.expect(200, "text/html");
    assert!(
        contains(&home.body, "href=\"/django/admin/\""),
        "{}",
        home.text()
    );
    let flask_page = get("/flask/");
    assert!(contains(&flask_page.body, "href=\"/flask/stream\""));
}

/// The sections of README.md whose snippets must quote the examples.
const README_SECTIONS: [&str; 5] = [
    "## Mounting in axum",
    "## Mounting in actix-web",
    "## Mounting in your service",
    "## Serving Flask",
    "## Serving Django",
];

/// The files README snippets may quote, relative to this crate.
const QUOTED_FILES: [&str; 10] = [
    "mount_axum.rs",
    "mount_actix.rs",
    "two_apps.rs",
    "gateway.rs",
    "apps/django_app/djdemo/settings_gateway.py",
    "apps/django_app/djdemo/gateway.py",
    "apps/flask_app/app.py",
    "apps/django_app/passenger_wsgi.py",
    "apps/django_app/djdemo/wsgi.py",
    "apps/django_app/djdemo/settings.py",
];

/// The fenced ```rust and ```python blocks of `section`.
fn snippets(section: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in section.lines() {
        if let Some((_, code)) = &mut current {
            if line == "```" {
                blocks.extend(current.take());
            } else {
                code.push_str(line);
                code.push('\n');
            }
        } else if let Some(lang) = line.strip_prefix("```")
            && matches!(lang, "rust" | "python")
        {
            current = Some((lang.to_owned(), String::new()));
        }
    }
    blocks
}

/// Whether `snippet`'s lines appear one after another in `source`; indentation aside, as
/// an excerpt from inside a function reads better moved to the left margin.
fn quotes(source: &str, snippet: &str) -> bool {
    let source: Vec<&str> = source.lines().map(str::trim_start).collect();
    let snippet: Vec<&str> = snippet.lines().map(str::trim_start).collect();
    !snippet.is_empty()
        && source
            .windows(snippet.len())
            .any(|w| w == snippet.as_slice())
}

#[test]
fn readme_snippets_quote_the_examples_word_for_word() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/../README.md")).expect("README.md");
    let sources: Vec<(&str, String)> = QUOTED_FILES
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(format!("{root}/{file}"))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            (*file, text)
        })
        .collect();
    for heading in README_SECTIONS {
        let start = readme
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
        let body = &readme[start + heading.len() + 2..];
        let section = &body[..body.find("\n## ").unwrap_or(body.len())];
        let blocks = snippets(section);
        assert!(
            blocks.iter().any(|(lang, _)| lang == "rust"),
            "{heading} has no Rust snippet"
        );
        for (lang, code) in blocks {
            assert!(
                sources.iter().any(|(_, text)| quotes(text, &code)),
                "this {lang} snippet of README's {heading:?} is not quoted word for word \
                 from any of {QUOTED_FILES:?}:\n{code}"
            );
        }
    }
}
