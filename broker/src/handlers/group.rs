//! Consumer group APIs: coordinator lookup, membership, offsets.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    find_coordinator_response::Coordinator as FoundCoordinator,
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};

use super::{str, RequestContext};
use crate::broker::Shared;
use crate::committer::{AdminOp, Unanswered};
use crate::error::KafkaCode;
use crate::groups::{CommitCheck, JoinRequest};
use crate::log::CommittedOffset;

const KEY_TYPE_GROUP: i8 = 0;

pub(super) fn find_coordinator(
    shared: &Shared,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let live = shared.live();
    // The live leader of the group's slot, or why there is none.
    let find = |group: &str| {
        if req.key_type != KEY_TYPE_GROUP {
            // Transactions are not offered, so there is no transaction
            // coordinator.
            return Err(KafkaCode::CoordinatorNotAvailable);
        }
        shared
            .coordinator(group)
            .and_then(|n| live.get(&n))
            .ok_or(KafkaCode::CoordinatorNotAvailable)
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = find(key.as_str());
                let c = FoundCoordinator::default().with_key(key);
                match found {
                    Ok(m) => c
                        .with_node_id(BrokerId(m.node))
                        .with_host(str(&m.host))
                        .with_port(m.port),
                    Err(code) => c
                        .with_error_code(code.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let r = FindCoordinatorResponse::default();
    match find(req.key.as_str()) {
        Ok(m) => r
            .with_node_id(BrokerId(m.node))
            .with_host(str(&m.host))
            .with_port(m.port),
        Err(code) => r
            .with_error_code(code.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}

pub(super) async fn join(
    shared: Arc<Shared>,
    req: JoinGroupRequest,
    ctx: &RequestContext,
) -> JoinGroupResponse {
    if let Err(code) = shared.check_coordinator(req.group_id.0.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(code.code())
            .with_generation_id(-1)
            .with_member_id(req.member_id);
    }
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    let rebalance = if ctx.version >= 1 {
        Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
    } else {
        session
    };
    let waiter = shared.groups.join(JoinRequest {
        group: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    });
    // The wait is bounded by the rebalance timeout, enforced by the
    // coordinator; a dropped sender means the member was removed.
    match waiter.await {
        Ok(r) => JoinGroupResponse::default()
            .with_error_code(r.error.code())
            .with_generation_id(r.generation)
            .with_protocol_type(r.protocol_type.as_deref().map(str))
            .with_protocol_name(r.protocol_name.as_deref().map(str))
            .with_leader(str(&r.leader))
            .with_member_id(str(&r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|(id, instance, meta)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str(&id))
                            .with_group_instance_id(instance.as_deref().map(str))
                            .with_metadata(meta)
                    })
                    .collect(),
            ),
        Err(_) => JoinGroupResponse::default()
            .with_error_code(KafkaCode::UnknownMemberId.code())
            .with_generation_id(-1)
            .with_member_id(req.member_id),
    }
}

pub(super) async fn sync(shared: Arc<Shared>, req: SyncGroupRequest) -> SyncGroupResponse {
    if let Err(code) = shared.check_coordinator(req.group_id.0.as_str()) {
        return SyncGroupResponse::default().with_error_code(code.code());
    }
    let waiter = shared.groups.sync(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.generation_id,
        req.assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    );
    match waiter.await {
        Ok(r) => SyncGroupResponse::default()
            .with_error_code(r.error.code())
            .with_protocol_type(r.protocol_type.as_deref().map(str))
            .with_protocol_name(r.protocol_name.as_deref().map(str))
            .with_assignment(r.assignment),
        Err(_) => {
            SyncGroupResponse::default().with_error_code(KafkaCode::RebalanceInProgress.code())
        }
    }
}

pub(super) fn heartbeat(shared: &Shared, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Err(code) = shared.check_coordinator(req.group_id.0.as_str()) {
        return HeartbeatResponse::default().with_error_code(code.code());
    }
    let code = shared.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code.code())
}

pub(super) fn leave(shared: &Shared, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    if let Err(code) = shared.check_coordinator(group) {
        return LeaveGroupResponse::default().with_error_code(code.code());
    }
    if version < 3 {
        let codes = shared.groups.leave(group, &[req.member_id.to_string()]);
        let code = codes.first().copied().unwrap_or(KafkaCode::UnknownMemberId);
        return LeaveGroupResponse::default().with_error_code(code.code());
    }
    let ids: Vec<String> = req
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    let codes = shared.groups.leave(group, &ids);
    let members = req
        .members
        .into_iter()
        .zip(codes)
        .map(|(m, c)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(c.code())
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub(super) async fn offset_commit(
    shared: Arc<Shared>,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let check = if group.is_empty() {
        CommitCheck::Refused(KafkaCode::InvalidGroupId)
    } else if let Err(code) = shared.check_coordinator(&group) {
        CommitCheck::Refused(code)
    } else {
        shared.groups.check_commit(
            &group,
            req.member_id.as_str(),
            req.generation_id_or_member_epoch,
        )
    };
    let offsets: Vec<CommittedOffset> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| CommittedOffset {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let n = offsets.len();
    let codes = match check {
        CommitCheck::Refused(code) => vec![code; n],
        CommitCheck::Ok => match shared.committer.commit_offsets(group, offsets).await {
            Ok(codes) => codes,
            Err(Unanswered::Stopped) => vec![KafkaCode::CoordinatorNotAvailable; n],
            Err(Unanswered::TimedOut) => vec![KafkaCode::RequestTimedOut; n],
        },
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(
                            codes.next().unwrap_or(KafkaCode::UnknownServerError).code(),
                        )
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Committed offsets of `group` for the requested partitions (all when
/// `topics` is `None`): (topic, [(partition, offset, epoch, metadata)]).
type FetchedOffsets = Vec<(String, Vec<(i32, i64, i32, Option<String>)>)>;

fn committed(
    shared: &Shared,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedOffsets {
    let Ok(state) = shared.state.read() else {
        return Vec::new();
    };
    let g = state.groups.get(group);
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|p| match g.and_then(|g| g.get(&(t.clone(), p))) {
                        Some(o) => (p, o.offset, o.leader_epoch, o.metadata.clone()),
                        None => (p, -1, -1, Some(String::new())),
                    })
                    .collect();
                (t, rows)
            })
            .collect(),
        None => {
            let mut out: FetchedOffsets = Vec::new();
            for ((t, p), o) in g.into_iter().flatten() {
                if out.last().map(|(n, _)| n != t).unwrap_or(true) {
                    out.push((t.clone(), Vec::new()));
                }
                if let Some((_, rows)) = out.last_mut() {
                    rows.push((*p, o.offset, o.leader_epoch, o.metadata.clone()));
                }
            }
            out
        }
    }
}

pub(super) fn offset_fetch(
    shared: &Shared,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                if let Err(code) = shared.check_coordinator(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code.code());
                }
                let topics = committed(shared, g.group_id.0.as_str(), wanted)
                    .into_iter()
                    .map(|(t, rows)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str(&t)))
                            .with_partitions(
                                rows.into_iter()
                                    .map(|(p, o, e, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(m.as_deref().map(str))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(code) = shared.check_coordinator(req.group_id.0.as_str()) {
        return OffsetFetchResponse::default().with_error_code(code.code());
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = committed(shared, req.group_id.0.as_str(), wanted)
        .into_iter()
        .map(|(t, rows)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str(&t)))
                .with_partitions(
                    rows.into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(m.as_deref().map(str))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// Every known group: those with members and those with only offsets.
fn known_groups(shared: &Shared) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = shared
        .groups
        .list()
        .into_iter()
        .map(|(n, s, t)| (n, s.to_string(), t))
        .collect();
    let live: BTreeSet<String> = out.iter().map(|(n, ..)| n.clone()).collect();
    if let Ok(state) = shared.state.read() {
        for g in state.groups.keys() {
            if !live.contains(g) {
                out.push((g.clone(), "Empty".into(), "consumer".into()));
            }
        }
    }
    out.sort();
    out
}

pub(super) fn list_groups(shared: &Shared, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = known_groups(shared)
        .into_iter()
        .filter(|(_, s, _)| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|f| f.as_str().eq_ignore_ascii_case(s))
        })
        .map(|(n, s, t)| {
            ListedGroup::default()
                .with_group_id(GroupId(str(&n)))
                .with_protocol_type(str(&t))
                .with_group_state(str(&s))
                .with_group_type(str("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe_groups(
    shared: &Shared,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let name = g.0.to_string();
            let d = DescribedGroup::default().with_group_id(g);
            if let Err(code) = shared.check_coordinator(&name) {
                return d.with_error_code(code.code());
            }
            match shared.groups.describe(&name) {
                Some(desc) => d
                    .with_group_state(str(desc.state))
                    .with_protocol_type(str(&desc.protocol_type))
                    .with_protocol_data(str(&desc.protocol))
                    .with_members(
                        desc.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str(&m.member_id))
                                    .with_group_instance_id(m.instance_id.as_deref().map(str))
                                    .with_client_id(str(&m.client_id))
                                    .with_client_host(str(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                None => {
                    let has_offsets = shared
                        .state
                        .read()
                        .map(|s| s.groups.contains_key(&name))
                        .unwrap_or(false);
                    if has_offsets {
                        d.with_group_state(str("Empty"))
                            .with_protocol_type(str("consumer"))
                    } else {
                        d.with_group_state(str("Dead"))
                    }
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) async fn delete_groups(
    shared: Arc<Shared>,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let name = g.0.to_string();
        let code = match shared
            .check_coordinator(&name)
            .map(|()| shared.groups.remove_if_empty(&name))
        {
            Err(code) | Ok(Err(code)) => code,
            Ok(Ok(had_members_state)) => {
                let has_offsets = shared
                    .state
                    .read()
                    .map(|s| s.groups.contains_key(&name))
                    .unwrap_or(false);
                if !had_members_state && !has_offsets {
                    KafkaCode::GroupIdNotFound
                } else {
                    match shared
                        .committer
                        .admin(AdminOp::DeleteGroup { group: name })
                        .await
                    {
                        Ok(_) => KafkaCode::None,
                        Err((code, _)) => code,
                    }
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
