//! Serve a Python WSGI (PEP 3333) application from an [actix-web](https://docs.rs/actix-web) 4
//! server.
//!
//! This crate is a placeholder: the adapter, a thin host over [`wsgi_core::Engine`] like
//! `wsgi-axum`'s `WsgiService`, lands in a later issue. Until then, serve applications with
//! `wsgi-axum`.
