//! The metrics endpoint: `GET /metrics` in the Prometheus text format (version 0.0.4),
//! rendered by `prometheus-client` from the engine's [`MetricsSnapshot`] and wsgi-serve's own
//! count of dropped log lines, read afresh on each scrape; and, next to it, `/livez` and
//! `/readyz` ([`crate::health`]).

use std::fmt;
use std::sync::Arc;

use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{self, CONTENT_TYPE};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use wsgi_core::{Engine, MetricsSnapshot, WorkerSnapshot};

use crate::health::{Answer, Health, LIVEZ, READYZ};
use crate::logging::DroppedLines;

/// Serves `GET /metrics` on `listener` (bound before the application loaded, or passed by
/// systemd), its own address apart from the application's, so it can stay private while
/// the application is public.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    engine: Engine,
    dropped: DroppedLines,
    health: Health,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot use the metrics socket: {e}"))?;
    let registry = Arc::new(registry(engine, dropped));
    let (live, ready) = (health.clone(), health);
    let router = Router::new()
        .route(LIVEZ, axum::routing::get(move || answer(live.livez())))
        .route(READYZ, axum::routing::get(move || answer(ready.readyz())));
    let router = router.route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::with_capacity(4096);
                match prometheus_text::encode(&mut text, &registry) {
                    Ok(()) => Ok(([("content-type", CONTENT_TYPE)], text)),
                    Err(fmt::Error) => Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                }
            }
        }),
    );
    match listener.local_addr() {
        Ok(addr) => tracing::info!("metrics on http://{addr}/metrics"),
        Err(e) => tracing::warn!("metrics on a socket whose address is unknown: {e}"),
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// A health answer as an axum response.
async fn answer((status, text): Answer) -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::from_u16(status).unwrap_or_default(),
        [("content-type", "text/plain; charset=utf-8")],
        text,
    )
}

/// A registry whose one collector reads `engine` and `dropped` on each scrape.
fn registry(engine: Engine, dropped: DroppedLines) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { engine, dropped }));
    registry
}

/// What a scrape reads.
#[derive(Debug)]
struct Scrape {
    engine: Engine,
    dropped: DroppedLines,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode(&self.engine.metrics(), self.dropped.get(), &mut encoder)
    }
}

/// The engine's metrics, by the names they have always had, and the dropped log lines.
fn encode(s: &MetricsSnapshot, dropped_lines: u64, encoder: &mut DescriptorEncoder) -> fmt::Result {
    counter(
        encoder,
        "wsgi_log_lines_dropped",
        "Log lines dropped because stderr could not take them as fast as they came.",
        dropped_lines,
    )?;
    // Counters are named without `_total`, which the encoder appends.
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    family(
        encoder,
        "wsgi_responses",
        "Finished responses by status class.",
        MetricType::Counter,
        classes
            .iter()
            .zip(s.responses_by_class)
            .map(|(class, n)| ([("class", *class)], Value::Count(n))),
    )?;
    counter(
        encoder,
        "wsgi_rejected_overload",
        "Requests answered 503 because the queue was full or waited too long.",
        s.rejected_overload,
    )?;
    counter(
        encoder,
        "wsgi_timeouts",
        "Requests that ran past the request timeout.",
        s.timeouts,
    )?;
    counter(
        encoder,
        "wsgi_stuck_threads",
        "Python threads that ignored a timeout's exception.",
        s.stuck_threads,
    )?;
    gauge(
        encoder,
        "wsgi_in_flight",
        "Requests accepted and not yet finished.",
        s.in_flight,
    )?;
    gauge(
        encoder,
        "wsgi_queue_depth",
        "Requests waiting for a Python thread.",
        s.queued,
    )?;
    family(
        encoder,
        "wsgi_threads",
        "Python worker threads by state.",
        MetricType::Gauge,
        [
            ([("state", "busy")], Value::Gauge(s.threads_busy)),
            ([("state", "idle")], Value::Gauge(s.threads_idle)),
        ],
    )?;
    if !s.workers.is_empty() {
        let by_worker = |value: fn(&WorkerSnapshot) -> Value| {
            s.workers
                .iter()
                .map(move |w| ([("worker", w.index.to_string())], value(w)))
        };
        family(
            encoder,
            "wsgi_worker_ready",
            "Whether each worker process takes requests (1) or not (0: starting, or stopped in an elastic pool).",
            MetricType::Gauge,
            by_worker(|w| Value::Gauge(usize::from(w.ready))),
        )?;
        family(
            encoder,
            "wsgi_worker_state",
            "1 for each worker's state: starting, ready, replacing or stopped (an elastic pool's worker it does not run now).",
            MetricType::Gauge,
            s.workers.iter().flat_map(|w| {
                ["starting", "ready", "replacing", "stopped"]
                    .into_iter()
                    .map(move |state| {
                        (
                            [("worker", w.index.to_string()), ("state", state.to_owned())],
                            Value::Gauge(usize::from(w.state.as_str() == state)),
                        )
                    })
            }),
        )?;
        family(
            encoder,
            "wsgi_worker_draining",
            "Replaced processes of each worker still finishing their requests.",
            MetricType::Gauge,
            by_worker(|w| Value::Gauge(w.draining)),
        )?;
        family(
            encoder,
            "wsgi_worker_requests",
            "Requests answered by each worker process (replacements included).",
            MetricType::Counter,
            by_worker(|w| Value::Count(w.requests)),
        )?;
        family(
            encoder,
            "wsgi_worker_restarts",
            "Worker process replacements by worker and reason (crash, max_requests, restart_file, ...).",
            MetricType::Counter,
            s.workers.iter().flat_map(|w| {
                w.restarts.iter().map(move |&(reason, n)| {
                    (
                        [
                            ("worker", w.index.to_string()),
                            ("reason", reason.to_owned()),
                        ],
                        Value::Count(n),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "wsgi_worker_rss_bytes",
            "Memory of each worker process as --max-rss compares it (resident; private with --preload) when last sampled (with --max-rss).",
            MetricType::Gauge,
            s.workers.iter().filter_map(|w| {
                let rss = usize::try_from(w.rss_bytes?).unwrap_or(usize::MAX);
                Some(([("worker", w.index.to_string())], Value::Gauge(rss)))
            }),
        )?;
        family(
            encoder,
            "wsgi_worker_age_seconds",
            "How long each worker process has been ready.",
            MetricType::Gauge,
            s.workers.iter().filter_map(|w| {
                Some((
                    [("worker", w.index.to_string())],
                    Value::Seconds(w.age?.as_secs_f64()),
                ))
            }),
        )?;
        family(
            encoder,
            "wsgi_worker_start_seconds",
            "How long each worker's current process took to start, until ready; `forked` says \
             whether it was forked from the --preload template (1) or started afresh (0).",
            MetricType::Gauge,
            s.workers.iter().filter_map(|w| {
                Some((
                    [
                        ("worker", w.index.to_string()),
                        ("forked", usize::from(w.forked).to_string()),
                    ],
                    Value::Seconds(w.start_duration?.as_secs_f64()),
                ))
            }),
        )?;
    }
    if let Some(pool) = &s.pool {
        gauge(
            encoder,
            "wsgi_pool_workers",
            "Worker processes the pool runs now (ready or starting).",
            pool.workers,
        )?;
        family(
            encoder,
            "wsgi_pool_workers_bound",
            "The pool's bounds: min (always running) and max (--processes MIN..MAX).",
            MetricType::Gauge,
            [
                ([("bound", "min")], Value::Gauge(pool.min)),
                ([("bound", "max")], Value::Gauge(pool.max)),
            ],
        )?;
        family(
            encoder,
            "wsgi_pool_starts",
            "Worker processes the pool started, by reason: minimum (at start-up), queue_wait \
             (a request waited for a thread).",
            MetricType::Counter,
            pool.starts
                .iter()
                .map(|&(reason, n)| ([("reason", reason)], Value::Count(n))),
        )?;
        family(
            encoder,
            "wsgi_pool_retirements",
            "Worker processes the pool retired, by reason: idle (no request for --pool-idle-time).",
            MetricType::Counter,
            pool.retirements
                .iter()
                .map(|&(reason, n)| ([("reason", reason)], Value::Count(n))),
        )?;
    }
    counter(
        encoder,
        "wsgi_gil_wait_seconds",
        "Time worker threads waited to re-acquire the GIL.",
        s.gil_wait.as_secs_f64(),
    )?;
    counter(
        encoder,
        "wsgi_queue_wait_seconds",
        "Time requests waited in the queue.",
        s.queue_wait.as_secs_f64(),
    )?;
    // The snapshot's buckets are cumulative; the encoder wants each bucket's own count.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = s
        .duration_buckets
        .iter()
        .map(|&(le, cumulative)| {
            let own = cumulative.saturating_sub(below);
            below = cumulative;
            (le, own)
        })
        .collect();
    encoder
        .encode_descriptor(
            "wsgi_request_duration_seconds",
            "Time from request to the end of its response body.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            s.duration_sum.as_secs_f64(),
            s.duration_count,
            &buckets,
            None,
        )
}

/// A sample's value: counters count up, gauges go both ways.
enum Value {
    Count(u64),
    Gauge(usize),
    Seconds(f64),
}

/// One metric with one sample per label set.
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, Value)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        match value {
            Value::Count(n) => sample.encode_counter::<NoLabelSet, _, u64>(&n, None)?,
            Value::Gauge(n) => sample.encode_gauge(&n)?,
            Value::Seconds(secs) => sample.encode_gauge(&secs)?,
        }
    }
    Ok(())
}

/// A counter without labels.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// A gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A scrape of fixed values.
    #[derive(Debug)]
    struct Fixed(MetricsSnapshot, u64);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode(&self.0, self.1, &mut encoder)
        }
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text_by_the_engines_metric_names() {
        // A snapshot can only come from an engine; its values are then set by hand.
        let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/startup/hello.py");
        let engine = Engine::builder(app)
            .threads(1)
            .build()
            .expect("hello.py loads");
        let mut s = engine.metrics();
        s.responses_by_class = [0, 2, 0, 0, 1];
        (s.rejected_overload, s.timeouts, s.stuck_threads) = (0, 0, 0);
        (s.in_flight, s.queued) = (0, 0);
        s.queue_wait = Duration::ZERO;
        s.threads_busy = 1;
        s.threads_idle = 3;
        s.gil_wait = Duration::from_millis(250);
        s.duration_buckets = vec![(0.001, 0), (0.005, 1), (0.25, 1), (10.0, 2)];
        s.duration_count = 3;
        s.duration_sum = Duration::from_millis(60_303);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(s, 7)));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE wsgi_responses_total counter",
            "wsgi_responses_total{class=\"2xx\"} 2",
            "wsgi_responses_total{class=\"5xx\"} 1",
            "wsgi_rejected_overload_total 0",
            "wsgi_timeouts_total 0",
            "wsgi_stuck_threads_total 0",
            "# TYPE wsgi_in_flight gauge",
            "wsgi_in_flight 0",
            "wsgi_queue_depth 0",
            "wsgi_threads{state=\"busy\"} 1",
            "wsgi_threads{state=\"idle\"} 3",
            "wsgi_gil_wait_seconds_total 0.25",
            "wsgi_queue_wait_seconds_total 0.0",
            "# TYPE wsgi_request_duration_seconds histogram",
            "wsgi_request_duration_seconds_bucket{le=\"0.001\"} 0",
            "wsgi_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "wsgi_request_duration_seconds_bucket{le=\"0.25\"} 1",
            "wsgi_request_duration_seconds_bucket{le=\"10\"} 2",
            "wsgi_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "wsgi_request_duration_seconds_sum 60.303",
            "wsgi_request_duration_seconds_count 3",
            "# TYPE wsgi_log_lines_dropped_total counter",
            "wsgi_log_lines_dropped_total 7",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        // Every sample line is `NAME[{LABELS}] VALUE`, each metric described once.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(types, 11, "{text}");
    }
}
