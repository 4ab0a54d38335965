//! Refusals of the group APIs whose answers carry an error per resource
//! (OffsetCommit per partition, OffsetFetch v8+ per group, DescribeGroups,
//! DeleteGroups): the refused resources are taken out of the request and
//! answered with their error in the shape of the client's version; what is
//! left goes to the cluster and the answers are joined. The connection
//! stays open: closing is for protocol violations.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsResponse, DescribeGroupsResponse, GroupId, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName,
};

/// What was taken out of a group request, to be answered with an error.
#[derive(Debug)]
pub(super) enum Taken {
    /// OffsetCommit: (topic, partitions, error).
    Commit(Vec<(TopicName, Vec<i32>, i16)>),
    /// OffsetFetch v8+, DescribeGroups, DeleteGroups: (group, error).
    Groups(Vec<(GroupId, i16)>),
}

/// Answers the request here when `all` (nothing of it is left to forward,
/// or its group is refused), lets it go on with a note for the response
/// half when some of it was taken, untouched when nothing was.
pub(super) fn finish(
    kind: Kind,
    taken: Taken,
    all: bool,
    notes: &mut crate::filter::Notes,
) -> crate::filter::RequestAction {
    use crate::filter::RequestAction;
    let none = match &taken {
        Taken::Commit(t) => t.is_empty(),
        Taken::Groups(g) => g.is_empty(),
    };
    if all {
        return RequestAction::Respond(Box::new(answer(kind, taken)));
    }
    if !none {
        notes.insert(super::NAME, (kind, taken));
    }
    RequestAction::Continue
}

/// The answer for what was taken, when nothing of the request is left to
/// forward.
fn answer(kind: Kind, taken: Taken) -> ResponseKind {
    let mut body = match kind {
        Kind::Commit => ResponseKind::OffsetCommit(OffsetCommitResponse::default()),
        Kind::FetchGroups => ResponseKind::OffsetFetch(OffsetFetchResponse::default()),
        Kind::Describe => ResponseKind::DescribeGroups(DescribeGroupsResponse::default()),
        Kind::Delete => ResponseKind::DeleteGroups(DeleteGroupsResponse::default()),
    };
    merge(&mut body, taken);
    body
}

/// Which group request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Commit,
    FetchGroups,
    Describe,
    Delete,
}

/// Adds the errors for what was taken to the cluster's answer.
pub(super) fn merge(body: &mut ResponseKind, taken: Taken) {
    match (body, taken) {
        (ResponseKind::OffsetCommit(r), Taken::Commit(topics)) => {
            for (name, parts, code) in topics {
                let partitions = parts
                    .into_iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                    })
                    .collect();
                r.topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(partitions),
                );
            }
        }
        (ResponseKind::OffsetFetch(r), Taken::Groups(groups)) => {
            for (group, code) in groups {
                r.groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group)
                        .with_error_code(code),
                );
            }
        }
        (ResponseKind::DescribeGroups(r), Taken::Groups(groups)) => {
            for (group, code) in groups {
                r.groups.push(
                    DescribedGroup::default()
                        .with_group_id(group)
                        .with_error_code(code),
                );
            }
        }
        (ResponseKind::DeleteGroups(r), Taken::Groups(groups)) => {
            for (group, code) in groups {
                r.results.push(
                    DeletableGroupResult::default()
                        .with_group_id(group)
                        .with_error_code(code),
                );
            }
        }
        _ => {}
    }
}

/// The whole answer to an OffsetFetch of one group (v0-7) that is refused:
/// the error at the top (v2+), and for every partition asked for (which
/// v0-1 read the error from).
pub(super) fn fetch_one_refused(req: &OffsetFetchRequest, code: i16) -> ResponseKind {
    let topics = req
        .topics
        .iter()
        .flatten()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partition_indexes
                        .iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::OffsetFetch(
        OffsetFetchResponse::default()
            .with_error_code(code)
            .with_topics(topics),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::StrBytes;

    fn group(name: &str) -> GroupId {
        GroupId(StrBytes::from_string(name.to_string()))
    }

    /// Every locally built refusal encodes and decodes back at every
    /// version the proxy carries, and the decoded answer still carries the
    /// error where that version keeps it.
    #[test]
    fn refusals_are_valid_at_every_version() {
        let topic = TopicName(StrBytes::from_static_str("social.posts"));
        type Build<'a> = Box<dyn Fn(i16) -> ResponseKind + 'a>;
        let cases: Vec<(ApiKey, Build<'_>)> = vec![
            (
                ApiKey::OffsetCommit,
                Box::new(|_| {
                    answer(
                        Kind::Commit,
                        Taken::Commit(vec![(topic.clone(), vec![0, 1], 30)]),
                    )
                }),
            ),
            (
                ApiKey::OffsetFetch,
                Box::new(|v| {
                    if v >= 8 {
                        answer(Kind::FetchGroups, Taken::Groups(vec![(group("g"), 30)]))
                    } else {
                        let req = OffsetFetchRequest::default()
                            .with_group_id(group("g"))
                            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                                .with_name(topic.clone())
                                .with_partition_indexes(vec![0, 2])]));
                        fetch_one_refused(&req, 30)
                    }
                }),
            ),
            (
                ApiKey::DescribeGroups,
                Box::new(|_| answer(Kind::Describe, Taken::Groups(vec![(group("g"), 30)]))),
            ),
            (
                ApiKey::DeleteGroups,
                Box::new(|_| answer(Kind::Delete, Taken::Groups(vec![(group("g"), 30)]))),
            ),
        ];
        for (api, build) in cases {
            let range = api.valid_versions();
            // OffsetCommit and OffsetFetch are carried up to v8.
            let max = match api {
                ApiKey::OffsetCommit | ApiKey::OffsetFetch => range.max.min(8),
                _ => range.max,
            };
            for v in range.min..=max {
                let body = build(v);
                let mut buf = BytesMut::new();
                body.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("{api:?} v{v}: encode: {e}"));
                let mut bytes = buf.freeze();
                let back = ResponseKind::decode(api, &mut bytes, v)
                    .unwrap_or_else(|e| panic!("{api:?} v{v}: decode: {e}"));
                assert!(bytes.is_empty(), "{api:?} v{v}: bytes left over");
                let codes: Vec<i16> = match &back {
                    ResponseKind::OffsetCommit(r) => r
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .collect(),
                    ResponseKind::OffsetFetch(r) if v >= 8 => {
                        r.groups.iter().map(|g| g.error_code).collect()
                    }
                    ResponseKind::OffsetFetch(r) => r
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .chain((v >= 2).then_some(r.error_code))
                        .collect(),
                    ResponseKind::DescribeGroups(r) => {
                        r.groups.iter().map(|g| g.error_code).collect()
                    }
                    ResponseKind::DeleteGroups(r) => {
                        r.results.iter().map(|g| g.error_code).collect()
                    }
                    other => panic!("{api:?} v{v}: {other:?}"),
                };
                assert!(
                    !codes.is_empty() && codes.iter().all(|c| *c == 30),
                    "{api:?} v{v}: {codes:?}"
                );
            }
        }
    }
}
