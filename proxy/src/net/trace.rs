//! What a request's trace span says: the topics it names, and the W3C
//! trace context a produced record carries (`traceparent`), which makes the
//! request's span a child of the producer's trace. Only done when the span
//! is recorded (traces are exported and the request sampled in).

use std::sync::OnceLock;

use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::codec::records::{decode_record_set, RecordsOptions};
use crate::filter::Request;

/// The most topics a span lists.
const MAX_TOPICS: usize = 16;

/// The API's name (`Fetch`, `Produce`, …), for labels and span names.
pub(crate) fn api_name(api: ApiKey) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..=i16::from(u8::MAX))
            .map(|k| match ApiKey::try_from(k) {
                // Built once per process, a few dozen short names.
                Ok(a) => &*Box::leak(format!("{a:?}").into_boxed_str()),
                Err(()) => "unknown",
            })
            .collect()
    });
    usize::try_from(api as i16)
        .ok()
        .and_then(|i| names.get(i).copied())
        .unwrap_or("unknown")
}

/// Records the request's topics on `span`, and follows the trace context
/// of the first produced record, if it carries one.
pub(crate) fn describe(span: &tracing::Span, request: &Request) {
    let mut topics: Vec<&str> = Vec::new();
    let mut first_records = None;
    match &request.body {
        RequestKind::Produce(p) => {
            for t in &p.topic_data {
                topics.push(t.name.0.as_str());
                if first_records.is_none() {
                    first_records = t
                        .partition_data
                        .iter()
                        .find_map(|p| p.records.as_ref().filter(|r| !r.is_empty()));
                }
            }
        }
        RequestKind::Fetch(f) => topics.extend(f.topics.iter().map(|t| t.topic.0.as_str())),
        RequestKind::Metadata(m) => topics.extend(
            m.topics
                .iter()
                .flatten()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str())),
        ),
        RequestKind::ListOffsets(l) => topics.extend(l.topics.iter().map(|t| t.name.0.as_str())),
        _ => {}
    }
    if !topics.is_empty() {
        topics.sort_unstable();
        topics.dedup();
        topics.truncate(MAX_TOPICS);
        span.record("topics", topics.join(",").as_str());
    }
    if let Some(client) = &request.header.client_id {
        span.record("kafka.client_id", client.as_str());
    }
    if let Some(records) = first_records {
        let parent = decode_record_set(records, &RecordsOptions::produce())
            .ok()
            .and_then(|set| {
                let record = set.batches.first()?.records.first()?;
                let value = record.headers.last(b"traceparent")?.value?;
                std::str::from_utf8(value).ok().map(str::to_string)
            });
        if let Some(tp) = parent {
            gatehouse_telemetry::follow_traceparent(span, &tp);
        }
    }
}
