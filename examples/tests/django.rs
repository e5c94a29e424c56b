//! The djdemo Django project (`apps/django_app/`) through both adapters, at the root and
//! mounted under `/dj`.
//!
//! Django's settings are process-wide, so Django has this test binary to itself. One
//! `application` serves every server here, mounted or not, at the same time: the prefix
//! reaches Django per request as SCRIPT_NAME (no `FORCE_SCRIPT_NAME`).

mod common;

use std::sync::OnceLock;

use common::{Cookies, Host, Site, host_cases};
use test_support::gate::Gate;
use test_support::wire::{Framing, Request, Response, contains, send};
use wsgi_core::Engine;

fn django() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| common::framework_engine("django", &common::test_app("django_site.py"), 4))
        .clone()
}

host_cases!(django, "/dj";
    a_json_view_sees_the_prefix_and_the_database,
    the_csrf_protected_form_rejects_a_post_without_the_token,
    reverse_and_url_carry_the_prefix,
    a_streaming_response_arrives_incrementally,
    a_file_response_goes_through_wsgi_file_wrapper,
    the_admin_login_page_renders_and_checks_credentials,
);

/// What `squares.csv` holds: `i,i*i` per line.
fn squares(rows: u64) -> String {
    (0..rows).map(|i| format!("{i},{}\n", i * i)).collect()
}

/// The `value` of the hidden `csrfmiddlewaretoken` input of a rendered form.
fn csrf_token(page: &Response) -> String {
    let text = page.text();
    let input = text
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no CSRF token in the page: {text}"));
    input.split('"').next().unwrap_or_default().to_owned()
}

/// Security headers Django's middleware adds to every response it builds.
fn assert_django_security_headers(response: &Response) {
    assert_eq!(
        response.header("x-frame-options"),
        Some("DENY"),
        "{response:?}"
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
}

fn a_json_view_sees_the_prefix_and_the_database(site: &Site) {
    let response = site.get("/api/status/?a=1&a=2&b=%C3%A9");
    response.expect(200, "application/json");
    response.assert_length_matches();
    assert_django_security_headers(&response);
    let status = response.json();
    assert_eq!(status["framework"], "django");
    assert!(
        status["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("5.")),
        "{status}"
    );
    assert_eq!(status["method"], "GET");
    assert_eq!(status["script_name"], site.mount);
    assert_eq!(status["path"], site.url("/api/status/"));
    assert_eq!(status["path_info"], "/api/status/");
    assert_eq!(
        status["query"],
        serde_json::json!({"a": ["1", "2"], "b": ["é"]})
    );
    // A query on the SQLite database that the project migrated at start-up.
    assert_eq!(status["users"], 0);

    // CommonMiddleware's APPEND_SLASH redirect is built from the full path too.
    let no_slash = site.get("/api/status");
    assert_eq!(no_slash.status, 301, "{no_slash:?}");
    assert_eq!(
        no_slash.header("location"),
        Some(site.url("/api/status/").as_str())
    );
}

fn the_csrf_protected_form_rejects_a_post_without_the_token(site: &Site) {
    let mut cookies = Cookies::default();
    let form = site.get("/guestbook/");
    form.expect(200, "text/html");
    cookies.update(&form);
    assert!(cookies.get("csrftoken").is_some(), "{form:?}");
    let token = csrf_token(&form);

    let fields = [("name", "Ann"), ("message", "Hello from a test")];
    let no_cookie = site.send(Request::form("/guestbook/", &fields));
    assert_eq!(no_cookie.status, 403, "{no_cookie:?}");
    assert!(
        contains(&no_cookie.body, "CSRF verification failed"),
        "{}",
        no_cookie.text()
    );
    let no_token = site.send(cookies.apply(Request::form("/guestbook/", &fields)));
    assert_eq!(no_token.status, 403, "{no_token:?}");

    let mut with_token = fields.to_vec();
    with_token.push(("csrfmiddlewaretoken", token.as_str()));
    let signed = site.send(cookies.apply(Request::form("/guestbook/", &with_token)));
    assert_eq!(signed.status, 302, "{}", signed.text());
    let location = signed.header("location").unwrap_or_default().to_owned();
    assert_eq!(location, site.url("/guestbook/?signed=Ann"));

    let thanks = send(site.server.addr, &cookies.apply(Request::get(&location)));
    thanks.expect(200, "text/html");
    assert!(
        contains(&thanks.body, "Thank you for signing, Ann."),
        "{}",
        thanks.text()
    );
}

fn reverse_and_url_carry_the_prefix(site: &Site) {
    let home = site.get("/");
    home.expect(200, "text/html");
    let text = home.text();
    for link in [
        "/api/status/",
        "/guestbook/",
        "/export.csv?rows=1000",
        "/download/",
        "/admin/",
    ] {
        let href = format!("href=\"{}\"", site.url(link));
        assert!(text.contains(&href), "no {href} in {text}");
    }
    let status = site.get("/api/status/").json();
    assert_eq!(status["guestbook_url"], site.url("/guestbook/"));
}

fn a_streaming_response_arrives_incrementally(site: &Site) {
    let gate = Gate::new();
    let mut conn = site.open(Request::get(&format!(
        "/export.csv?rows=2000&{}",
        gate.query()
    )));
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    let header = |name: &str| head.header(name);
    assert_eq!(header("content-type"), Some("text/csv"));
    assert_eq!(
        header("content-disposition"),
        Some("attachment; filename=\"squares.csv\"")
    );
    assert_eq!(header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        header("x-wsgi-iterable"),
        Some("django.http.response.StreamingHttpResponse")
    );
    // The export holds its rows until the gate opens, which happens only once the header
    // row has reached the client.
    let mut body = conn.read_chunked_until(b"n,square\n");
    gate.open();
    body.extend_from_slice(&conn.read_chunked_to_end());
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("n,square\n{}", squares(2000))
    );
}

fn a_file_response_goes_through_wsgi_file_wrapper(site: &Site) {
    let expected = squares(50_000);
    let response = site.get("/download/");
    response.expect(200, "text/csv");
    assert_eq!(response.framing, Framing::Length(expected.len()));
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=\"squares.csv\"")
    );
    assert_eq!(
        response.header("x-wsgi-iterable"),
        Some("wsgi_core.FileWrapper"),
        "Django hands FileResponse's file to the server's wsgi.file_wrapper"
    );
    assert_django_security_headers(&response);
    assert!(response.text() == expected, "the downloaded file differs");
}

fn the_admin_login_page_renders_and_checks_credentials(site: &Site) {
    let admin = site.get("/admin/");
    assert_eq!(admin.status, 302, "{admin:?}");
    let login_url = site.url("/admin/login/");
    assert_eq!(
        admin.header("location"),
        Some(format!("{login_url}?next={}", site.url("/admin/")).as_str())
    );

    let mut cookies = Cookies::default();
    let page = site.get("/admin/login/");
    page.expect(200, "text/html");
    cookies.update(&page);
    let text = page.text();
    assert!(
        text.contains("<title>Log in | Django site admin</title>"),
        "{text}"
    );
    assert!(
        text.contains(&format!("action=\"{login_url}\"")),
        "the form posts back under the prefix: {text}"
    );
    assert!(text.contains("name=\"username\""), "{text}");

    // Wrong credentials: Django asks the database and renders the form again.
    let token = csrf_token(&page);
    let attempt = site.send(cookies.apply(Request::form(
        "/admin/login/",
        &[
            ("username", "nobody"),
            ("password", "wrong"),
            ("csrfmiddlewaretoken", token.as_str()),
        ],
    )));
    attempt.expect(200, "text/html");
    assert!(
        contains(
            &attempt.body,
            "Please enter the correct username and password"
        ),
        "{}",
        attempt.text()
    );

    // The admin's stylesheet, served by WhiteNoise under the same prefix.
    let css = site.get("/static/admin/css/base.css");
    css.expect(200, "text/css");
    assert!(contains(&css.body, "DJANGO Admin styles"));
    assert_eq!(css.header("x-wsgi-iterable"), Some("wsgi_core.FileWrapper"));
}

/// Two engines on the one Django project, each on its own server and prefix, at once:
/// Django is set up once, and every request builds its URLs from its own SCRIPT_NAME.
#[test]
fn several_engines_serve_one_django_project_under_different_prefixes() {
    let Some(first) = django() else { return };
    let passenger = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/apps/django_app/passenger_wsgi.py"
    );
    let Some(second) = common::framework_engine("django", passenger, 2) else {
        return;
    };
    let one = Site::new(Host::Axum, &first, "/one");
    let two = Site::new(Host::Actix, &second, "/two/deep");
    let root = Site::new(Host::Axum, &second, "");
    for _ in 0..3 {
        for site in [&one, &two, &root] {
            let status = site.get("/api/status/").json();
            assert_eq!(status["guestbook_url"], site.url("/guestbook/"));
            assert_eq!(status["script_name"], site.mount);
        }
    }
}
