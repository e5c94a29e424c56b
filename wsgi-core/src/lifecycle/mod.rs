//! Worker lifecycle: when a worker process is replaced, and how fast.
//!
//! These are the supervisor's decisions, kept free of processes and sockets so each can be
//! tested alone. The supervisor (the worker-process runner) asks them:
//!
//! - [`policy`]: the operator's recycling settings ([`policy::Recycle`]) and each worker's
//!   own limits drawn from them at spawn ([`policy::Budget`]): requests served, age and
//!   resident memory, with jitter so workers do not all restart together, and a minimum
//!   lifetime before a memory recycle, so a worker over the limit right after start-up is
//!   not replaced in a loop (gunicorn's `max_requests`/`max_requests_jitter`, Granian's
//!   `--workers-lifetime`/`--workers-max-rss`, uWSGI's `min-worker-lifetime`);
//! - [`restart_file`]: Passenger's `tmp/restart.txt` and `tmp/always_restart.txt`;
//! - [`rss`]: a worker's memory as `max_rss` compares it, read from `/proc`;
//! - [`forked_rss`]: a worker forked from the preload template is its private memory, not
//!   its resident set, which counts the template's pages it shares;
//! - [`rss_loop`]: workers over the memory limit as soon as they start, an application that
//!   cannot meet it: said once, and memory recycles spaced out by a growing hold;
//! - [`backoff`]: how long to wait before replacing a worker that crashed, so a crash loop
//!   costs little CPU and never stops the host;
//! - [`reason`]: why a worker was replaced, as a stable metric label and log word;
//! - [`random`]: the small generator the jitter draws from;
//! - [`elastic`]: when an elastic pool grows by a worker (a request waited in the queue)
//!   and which worker it retires (the one idle the longest), Passenger's and uWSGI's
//!   "cheaper" pool.
//!
//! None of these replace a worker: they only say that one is due. The replacement itself
//! (start the new worker, wait until it is ready, route to it, then drain the old one) is
//! the supervisor's, so every trigger gets the same lossless sequence.

pub(crate) mod backoff;
pub(crate) mod elastic;
pub(crate) mod forked_rss;
pub(crate) mod policy;
pub(crate) mod random;
pub(crate) mod reason;
pub(crate) mod restart_file;
pub(crate) mod rss;
pub(crate) mod rss_loop;
