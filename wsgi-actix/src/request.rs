//! actix-web's request (http 0.2 types, a `!Send` payload) to the engine's `HostRequest`.

use actix_web::dev::Payload;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use wsgi_core::{BoxError, ConnInfo, EnvironExtras, Scheme};

/// The request handed to the engine.
pub(crate) type EngineRequest = (
    http::Request<mpsc::Receiver<Result<Bytes, BoxError>>>,
    ConnInfo,
);

/// Converts the request; a head that `http` 1 rejects gets a 400 response instead.
pub(crate) fn convert(
    req: &HttpRequest,
    payload: &mut Payload,
) -> Result<EngineRequest, HttpResponse> {
    let bad = |what: &str| HttpResponse::BadRequest().body(format!("Bad Request: {what}\n"));
    let mut builder = http::Request::builder()
        .method(
            http::Method::from_bytes(req.method().as_str().as_bytes())
                .map_err(|_| bad("method"))?,
        )
        .uri(req.uri().to_string())
        .version(match req.version() {
            actix_web::http::Version::HTTP_09 => http::Version::HTTP_09,
            actix_web::http::Version::HTTP_10 => http::Version::HTTP_10,
            actix_web::http::Version::HTTP_2 => http::Version::HTTP_2,
            actix_web::http::Version::HTTP_3 => http::Version::HTTP_3,
            _ => http::Version::HTTP_11,
        });
    if let Some(headers) = builder.headers_mut() {
        headers.reserve(req.headers().len());
        for (name, value) in req.headers() {
            let name = http::HeaderName::from_bytes(name.as_str().as_bytes())
                .map_err(|_| bad("header name"))?;
            let value =
                http::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| bad("header value"))?;
            headers.append(name, value);
        }
    }
    // What a middleware set with `req.extensions_mut().insert(EnvironExtras)`; cloned, not
    // taken, so middleware that looks at the request after the response still sees it.
    if let Some(extras) = req.extensions().get::<EnvironExtras>() {
        builder = builder.extension(extras.clone());
    }
    let request = builder
        .body(pump(payload.take()))
        .map_err(|_| bad("request line"))?;

    // What the router consumed is the mount, including any enclosing scope.
    let matched = req.match_info().as_str();
    let mount = &matched[..matched.len() - req.match_info().unprocessed().len()];
    let config = req.app_config();
    let mut conn = ConnInfo::new(req.peer_addr(), Some(config.local_addr()));
    // Marked by `on_connect`, from the type of the socket, never from the missing address.
    if req.conn_data::<crate::UnixSocket>().is_some() {
        conn.unix_socket = true;
        // actix-web gives a UNIX socket's connections a made-up 127.0.0.1:8080.
        conn.local_addr = None;
    }
    let conn = conn.with_mount(mount).with_scheme(if config.secure() {
        Scheme::Https
    } else {
        Scheme::Http
    });
    Ok((request, conn))
}

/// actix's payload is `!Send` and lives on the worker's thread, so a local task forwards it
/// into a channel the engine can poll from anywhere. The channel holds no more than one
/// chunk, so reading stays driven by the application.
fn pump(mut payload: Payload) -> mpsc::Receiver<Result<Bytes, BoxError>> {
    let (mut tx, rx) = mpsc::channel(0);
    actix_web::rt::spawn(async move {
        use futures::SinkExt;
        // Wait until the engine asks for data before touching the socket.
        while futures::future::poll_fn(|cx| tx.poll_ready(cx))
            .await
            .is_ok()
        {
            let item = match payload.next().await {
                Some(Ok(bytes)) => Ok(bytes),
                Some(Err(e)) => Err(BoxError::from(e.to_string())),
                None => break,
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}
