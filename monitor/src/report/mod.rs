//! What is written: connection records and alerts as one typed model (`record`), built from
//! what the pipeline knows (`connection`, `alert`), summarised by `dedupe`, and rendered as ECS
//! or OCSF (`ocsf`).
pub(crate) mod alert;
pub(crate) mod connection;
pub(crate) mod dedupe;
pub(crate) mod host;
pub(crate) mod ocsf;
pub(crate) mod record;
