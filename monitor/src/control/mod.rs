//! How the running daemon is reached and supervised: the local HTTP API on a unix socket
//! (`api`), Prometheus metrics (`metrics`), systemd's sd_notify (`sdnotify`), and the one
//! connection-limited accept loop the API and metrics servers share (`accept`).
pub(crate) mod accept;
pub(crate) mod api;
pub(crate) mod metrics;
pub(crate) mod sdnotify;
