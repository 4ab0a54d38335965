//! Governance filters: `authz` (Cedar decisions for every request's
//! resources) and `consent` (records of subjects who did not consent to the
//! consumer's purpose are removed from fetched batches).
//!
//! Decisions come from [`gatehouse_policy`]: topic-level ones through a
//! *plan* compiled once per (principal, topic, policy version), record-level
//! ones memoized per distinct consent set, so steady-state traffic costs no
//! Cedar evaluation. A denied resource gets its Kafka authorization error
//! (`TOPIC_AUTHORIZATION_FAILED`, `GROUP_AUTHORIZATION_FAILED`,
//! `CLUSTER_AUTHORIZATION_FAILED`) while the other resources of the same
//! request proceed: denied topics are taken out of the request, and their
//! errors are put back into the cluster's response.

use std::sync::Arc;

use crate::metrics::ProxyMetrics;

use bytes::Bytes;
use gatehouse_policy::{Action, Catalog, PolicyStore, PrincipalInfo, Resource};
use kafka_protocol::messages::{
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    delete_topics_response::DeletableTopicResult,
    describe_configs_response::DescribeConfigsResult,
    fetch_response::{FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    AlterConfigsResponse, ApiKey, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteRecordsResponse, DeleteTopicsResponse, DescribeConfigsResponse, FetchResponse,
    IncrementalAlterConfigsResponse, ListOffsetsResponse, ProduceResponse, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::auth::principal::principal_info;
use crate::codec::records::RecordsOptions;

mod groups;
use crate::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, Response, ResponseAction,
    SessionContext,
};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// The audit trail's resource type of transactional ids.
const TRANSACTIONAL_ID: &str = "transactional_id";

/// Why a transactional producer the policies allow is refused.
const TRANSACTIONS_UNSUPPORTED: &str = "transactions are not supported through the proxy";
const POLICY_VIOLATION: i16 = 44;

/// Which topics of a request were refused, by API.
#[derive(Debug, Default)]
struct Refused {
    /// (topic, partitions) refused with `code`.
    topics: Vec<(TopicName, Vec<i32>, i16)>,
    /// Config resources (type, name) refused with `code`.
    resources: Vec<(i8, StrBytes, i16)>,
    /// Why a produce partition was refused, where the answer says it.
    messages: Vec<((TopicName, i32), String)>,
}

impl Refused {
    fn message(&self, topic: &TopicName, partition: i32) -> Option<StrBytes> {
        self.messages
            .iter()
            .find(|((t, p), _)| t == topic && *p == partition)
            .map(|(_, m)| StrBytes::from_string(m.clone()))
    }
}

/// The message sent with a refusal where the API carries one.
const DENIED: &str = "denied by policy";

fn denied() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(DENIED))
}

/// Config resource type of a topic (`DescribeConfigs`, `AlterConfigs`).
const TOPIC_RESOURCE: i8 = 2;

/// Cedar authorization of every request.
#[derive(Debug)]
pub struct Authz {
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
    audit: Option<gatehouse_audit::AuditLog>,
    metrics: Option<Arc<ProxyMetrics>>,
}

impl Authz {
    /// A filter deciding with `policies` about the topics of `catalog`.
    pub fn new(policies: Arc<PolicyStore>, catalog: Arc<Catalog>) -> Self {
        Self {
            policies,
            catalog,
            audit: None,
            metrics: None,
        }
    }

    /// Decisions and refusals are counted in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<ProxyMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, action: Action, allowed: bool) {
        if let Some(m) = &self.metrics {
            m.decision(action, allowed);
        }
    }

    /// Denials are also written to `log` (before they are answered).
    pub fn with_audit(mut self, log: Option<gatehouse_audit::AuditLog>) -> Self {
        self.audit = log;
        self
    }

    fn topic_allowed(&self, who: &PrincipalInfo, action: Action, topic: &str) -> bool {
        // Produce, consume and describe come from the topic's plan (cached
        // per principal, topic and policy version); the rarer admin actions
        // ask Cedar.
        let plan;
        let asked;
        let decision = match action {
            Action::Produce | Action::Consume | Action::Describe => {
                plan = self.policies.plan(who, topic, &self.catalog);
                plan.decision(action)
            }
            _ => None,
        };
        let decision = match decision {
            Some(d) => d,
            None => {
                asked = self
                    .policies
                    .authorize(who, action, Resource::Topic(topic), &self.catalog);
                &asked
            }
        };
        self.count(action, decision.allowed);
        let admin = !matches!(action, Action::Produce | Action::Consume | Action::Describe);
        if !decision.allowed || admin {
            crate::filter::audit::note_decision(
                "topic",
                topic,
                decision.allowed,
                &decision.policies,
            );
        }
        decision.allowed
    }

    fn group_allowed(&self, who: &PrincipalInfo, action: Action, group: &str) -> bool {
        let d = self
            .policies
            .authorize(who, action, Resource::Group(group), &self.catalog);
        self.count(action, d.allowed);
        if !d.allowed || action == Action::DeleteGroup {
            crate::filter::audit::note_decision("group", group, d.allowed, &d.policies);
        }
        d.allowed
    }

    fn cluster_allowed(&self, who: &PrincipalInfo, action: Action) -> bool {
        let d = self
            .policies
            .authorize(who, action, Resource::Cluster, &self.catalog);
        self.count(action, d.allowed);
        if !d.allowed || action == Action::ClusterAdmin {
            crate::filter::audit::note_decision("cluster", "cluster", d.allowed, &d.policies);
        }
        d.allowed
    }
}

const NAME: &str = "authz";

/// The APIs this filter decides on; any other is not advertised, and
/// refused by closing the connection if a client sends it anyway.
const DECIDED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DescribeCluster,
];

/// One log line per refused resource, with the policies that decided and
/// the reason (names of topics, groups and principals; never a record's
/// content); and the decision on the request's trace span.
fn refused(
    s: &SessionContext,
    api: ApiKey,
    denials: &[crate::filter::audit::Denial],
    notes: &mut crate::filter::Notes,
) {
    let principal = s
        .principal
        .as_ref()
        .map(|p| p.name.as_str())
        .unwrap_or("anonymous");
    let mut ids: Vec<&str> = Vec::new();
    for (kind, resource, allowed, policies, reason) in denials {
        if *allowed {
            continue;
        }
        ids.extend(policies.iter().map(String::as_str));
        tracing::info!(
            peer = %s.peer,
            principal,
            api = ?api,
            resource_type = *kind,
            resource = resource.as_str(),
            policies = %if policies.is_empty() { "(none: default deny)".to_string() } else { policies.join(",") },
            reason = reason.as_deref().unwrap_or("denied by policy"),
            "refused"
        );
    }
    let span = tracing::Span::current();
    if !span.is_disabled() {
        ids.sort_unstable();
        ids.dedup();
        let ids = ids.join(",");
        span.record("decision", "deny");
        span.record("policy_ids", ids.as_str());
        notes.insert(
            crate::filter::TRACE_NOTE,
            crate::filter::Traced {
                decision: "deny",
                policy_ids: ids,
            },
        );
    }
}

fn deny_log(s: &SessionContext, api: ApiKey, what: &str) {
    tracing::debug!(
        peer = %s.peer,
        principal = s.principal.as_ref().map(|p| p.name.as_str()).unwrap_or("anonymous"),
        ?api,
        resource = what,
        "denied"
    );
}

impl Filter for Authz {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        match direction {
            // Deny by default: every request is looked at.
            Direction::Request => !matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            ),
            Direction::Response => matches!(api, ApiKey::Metadata | ApiKey::ListGroups),
        }
    }

    fn max_version(&self, api: ApiKey) -> Option<i16> {
        // Later versions name topics by id only.
        match api {
            ApiKey::Fetch => Some(12),
            ApiKey::Produce => Some(9),
            ApiKey::OffsetCommit | ApiKey::OffsetFetch => Some(8),
            // An API this filter has no decision for would be refused by
            // closing the connection: it is not advertised at all, so that
            // clients do not use it (e.g. OffsetDelete, ACLs, quorum APIs).
            _ if !DECIDED.contains(&api)
                && !matches!(
                    api,
                    ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                ) =>
            {
                Some(-1)
            }
            _ => None,
        }
    }

    fn on_request<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        let who = principal_info(s.principal.as_ref());
        let api = r.api;
        let (action, denials) =
            crate::filter::audit::collect_denials(|| self.decide_request(s, &who, r));
        if denials.iter().any(|d| !d.2) {
            refused(s, api, &denials, &mut r.notes);
            if let Some(m) = &self.metrics {
                m.refusal(api);
            }
        }
        Box::pin(async move {
            let Some(log) = &self.audit else {
                return action;
            };
            if denials.is_empty() {
                return action;
            }
            // The refusal is answered only once it is on the record.
            match log
                .append_all(crate::filter::audit::denial_events(&who, api, denials))
                .await
            {
                Ok(_) => action,
                Err(e) => {
                    tracing::error!(error = %e, "audit log unavailable: request refused");
                    RequestAction::Close(format!("audit log unavailable: {e}"))
                }
            }
        })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        let who = principal_info(s.principal.as_ref());
        if let Some((_, taken)) = r.notes.take::<(groups::Kind, groups::Taken)>(NAME) {
            groups::merge(&mut r.body, taken);
        }
        let refused: Option<Refused> = r.notes.take(NAME);
        match &mut r.body {
            ResponseKind::Metadata(m) => {
                // Only topics the principal may describe are shown.
                m.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_none_or(|n| self.topic_allowed(&who, Action::Describe, n.0.as_str()))
                });
            }
            ResponseKind::ListGroups(l) => {
                l.groups.retain(|g| {
                    self.group_allowed(&who, Action::DescribeGroup, g.group_id.0.as_str())
                });
            }
            ResponseKind::Produce(p) => {
                let refused = refused.unwrap_or_default();
                for (name, parts, code) in &refused.topics {
                    let errors = parts.iter().map(|i| {
                        PartitionProduceResponse::default()
                            .with_index(*i)
                            .with_error_code(*code)
                            .with_base_offset(-1)
                            .with_error_message(refused.message(name, *i))
                    });
                    // Refused partitions of a topic whose others went through
                    // join that topic's entry.
                    match p.responses.iter_mut().find(|t| t.name == *name) {
                        Some(t) => t.partition_responses.extend(errors),
                        None => p.responses.push(
                            TopicProduceResponse::default()
                                .with_name(name.clone())
                                .with_partition_responses(errors.collect()),
                        ),
                    }
                }
            }
            ResponseKind::Fetch(f) => {
                for (name, parts, code) in refused.map(|r| r.topics).unwrap_or_default() {
                    f.responses.push(fetch_errors(name, parts, code));
                }
            }
            ResponseKind::ListOffsets(l) => {
                for (name, parts, code) in refused.map(|r| r.topics).unwrap_or_default() {
                    l.topics.push(list_offsets_errors(name, parts, code));
                }
            }
            ResponseKind::CreateTopics(c) => {
                push_create_topics(c, refused.map(|r| r.topics).unwrap_or_default());
            }
            ResponseKind::DeleteTopics(d) => {
                push_delete_topics(d, refused.map(|r| r.topics).unwrap_or_default());
            }
            ResponseKind::CreatePartitions(c) => {
                push_create_partitions(c, refused.map(|r| r.topics).unwrap_or_default());
            }
            ResponseKind::DeleteRecords(d) => {
                push_delete_records(d, refused.map(|r| r.topics).unwrap_or_default());
            }
            body @ (ResponseKind::DescribeConfigs(_)
            | ResponseKind::AlterConfigs(_)
            | ResponseKind::IncrementalAlterConfigs(_)) => {
                merge_resources(body, refused.map(|r| r.resources).unwrap_or_default());
            }
            _ => {}
        }
        Box::pin(async { ResponseAction::Continue })
    }
}

fn fetch_errors(name: TopicName, parts: Vec<i32>, code: i16) -> FetchableTopicResponse {
    FetchableTopicResponse::default()
        .with_topic(name)
        .with_partitions(
            parts
                .into_iter()
                .map(|i| {
                    PartitionData::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_high_watermark(-1)
                        .with_records(Some(Bytes::new()))
                })
                .collect(),
        )
}

fn list_offsets_errors(name: TopicName, parts: Vec<i32>, code: i16) -> ListOffsetsTopicResponse {
    ListOffsetsTopicResponse::default()
        .with_name(name)
        .with_partitions(
            parts
                .into_iter()
                .map(|i| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                        .with_offset(-1)
                        .with_timestamp(-1)
                })
                .collect(),
        )
}

impl Authz {
    fn decide_request(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        r: &mut Request,
    ) -> RequestAction {
        let api = r.api;
        match &mut r.body {
            RequestKind::Produce(p) => {
                let mut refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Produce,
                    &mut p.topic_data,
                    |t| &t.name,
                    |t| t.partition_data.iter().map(|p| p.index).collect(),
                );
                // Per record (governed topics): the `produce_record` policies
                // decide on each record's region; a partition with a refused
                // record is refused as a whole, nothing of it is stored.
                for t in &mut p.topic_data {
                    let name = t.name.0.to_string();
                    let info = self.catalog.lookup(&name);
                    if !info.governed() {
                        continue;
                    }
                    let plan = self.policies.plan(who, &name, &self.catalog);
                    let residency = info.residency().to_string();
                    let mut bad = Vec::new();
                    t.partition_data.retain(|part| {
                        let Some(records) = &part.records else {
                            return true;
                        };
                        let verdict =
                            crate::codec::records::decode_record_set(records, &RecordsOptions::produce())
                                .map(|set| {
                                    self.policies.count_record_decisions(
                                        set.batches.iter().map(|b| b.records.len() as u64).sum(),
                                    );
                                    set.batches
                                        .iter()
                                        .flat_map(|b| b.records.iter())
                                        .enumerate()
                                        .find_map(|(at, rec)| {
                                            let region = rec
                                                .headers
                                                .last(b"region")
                                                .and_then(|h| h.value)
                                                .map(|v| std::str::from_utf8(v).unwrap_or("(not UTF-8)"))
                                                .unwrap_or(&residency);
                                            (!plan.produce_record_allowed(region))
                                                .then(|| (at, region.chars().take(64).collect::<String>()))
                                        })
                                });
                        match verdict {
                            Ok(None) => true,
                            Ok(Some((at, region))) => {
                                deny_log(s, api, &format!("{name}: record region"));
                                crate::filter::audit::note_refusal(
                                    "topic",
                                    &name,
                                    &[],
                                    &format!(
                                        "partition {}: record {at} of the batch: region {region:?} refused by the produce_record policies",
                                        part.index
                                    ),
                                );
                                bad.push((
                                    part.index,
                                    POLICY_VIOLATION,
                                    format!("record {at} of the batch: region {region:?} refused by policy"),
                                ));
                                false
                            }
                            Err(e) => {
                                let why = format!("the record batch cannot be read: {e}");
                                crate::filter::audit::note_refusal(
                                    "topic",
                                    &name,
                                    &[],
                                    &format!("partition {}: {why}", part.index),
                                );
                                bad.push((part.index, e.produce_error_code(), why));
                                false
                            }
                        }
                    });
                    for (index, code, why) in bad {
                        refused.topics.push((t.name.clone(), vec![index], code));
                        refused.messages.push(((t.name.clone(), index), why));
                    }
                }
                p.topic_data.retain(|t| !t.partition_data.is_empty());
                if refused.topics.is_empty() {
                    return RequestAction::Continue;
                }
                if p.topic_data.is_empty() {
                    if p.acks == 0 {
                        return RequestAction::Drop;
                    }
                    let mut resp = ProduceResponse::default();
                    for (name, parts, code) in &refused.topics {
                        resp.responses.push(
                            TopicProduceResponse::default()
                                .with_name(name.clone())
                                .with_partition_responses(
                                    parts
                                        .iter()
                                        .map(|i| {
                                            PartitionProduceResponse::default()
                                                .with_index(*i)
                                                .with_error_code(*code)
                                                .with_base_offset(-1)
                                                .with_error_message(refused.message(name, *i))
                                        })
                                        .collect(),
                                ),
                        );
                    }
                    return RequestAction::Respond(Box::new(ResponseKind::Produce(resp)));
                }
                r.notes.insert(NAME, refused);
                RequestAction::Continue
            }
            RequestKind::Fetch(f) => {
                if f.replica_id.0 >= 0 {
                    return RequestAction::Close("replica fetches are not served".into());
                }
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Consume,
                    &mut f.topics,
                    |t| &t.topic,
                    |t| t.partitions.iter().map(|p| p.partition).collect(),
                );
                let all_refused = f.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = FetchResponse::default();
                    for (name, parts, code) in topics {
                        resp.responses.push(fetch_errors(name, parts, code));
                    }
                    ResponseKind::Fetch(resp)
                })
            }
            RequestKind::ListOffsets(l) => {
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::Describe,
                    &mut l.topics,
                    |t| &t.name,
                    |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                );
                let all_refused = l.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = ListOffsetsResponse::default();
                    for (name, parts, code) in topics {
                        resp.topics.push(list_offsets_errors(name, parts, code));
                    }
                    ResponseKind::ListOffsets(resp)
                })
            }
            RequestKind::Metadata(m) => {
                // Topics asked for by name that the principal may not
                // describe are hidden from the response (below); asking is
                // recorded as a denial. A listing of all topics is not.
                for t in m.topics.iter().flatten() {
                    if let Some(n) = &t.name {
                        if !self.topic_allowed(who, Action::Describe, n.0.as_str()) {
                            deny_log(s, api, n.0.as_str());
                        }
                    }
                }
                // Auto-creation only for who may create the topic.
                if m.allow_auto_topic_creation {
                    // Not a denial worth recording: clients ask for
                    // auto-creation by default.
                    let all_creatable = m.topics.iter().flatten().all(|t| {
                        t.name.as_ref().is_some_and(|n| {
                            self.policies
                                .authorize(
                                    who,
                                    Action::CreateTopic,
                                    Resource::Topic(n.0.as_str()),
                                    &self.catalog,
                                )
                                .allowed
                        })
                    });
                    if !all_creatable {
                        m.allow_auto_topic_creation = false;
                    }
                }
                RequestAction::Continue
            }
            RequestKind::FindCoordinator(_) => RequestAction::Continue,
            RequestKind::JoinGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::SyncGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::Heartbeat(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::LeaveGroup(g) => {
                self.group(s, who, api, Action::JoinGroup, g.group_id.0.as_str())
            }
            RequestKind::OffsetFetch(o) => {
                if r.version >= 8 {
                    // Several groups, each answered on its own.
                    let mut taken = Vec::new();
                    o.groups.retain(|g| {
                        let ok =
                            self.group_allowed(who, Action::DescribeGroup, g.group_id.0.as_str());
                        if !ok {
                            deny_log(s, api, g.group_id.0.as_str());
                            taken.push((g.group_id.clone(), GROUP_AUTHORIZATION_FAILED));
                        }
                        ok
                    });
                    let all = o.groups.is_empty() && !taken.is_empty();
                    return groups::finish(
                        groups::Kind::FetchGroups,
                        groups::Taken::Groups(taken),
                        all,
                        &mut r.notes,
                    );
                }
                if self.group_allowed(who, Action::DescribeGroup, o.group_id.0.as_str()) {
                    return RequestAction::Continue;
                }
                deny_log(s, api, o.group_id.0.as_str());
                RequestAction::Respond(Box::new(groups::fetch_one_refused(
                    o,
                    GROUP_AUTHORIZATION_FAILED,
                )))
            }
            RequestKind::OffsetCommit(o) => {
                // The group refused: every partition is; the group allowed:
                // the partitions of topics the principal may not consume.
                let group_ok = self.group_allowed(who, Action::CommitOffset, o.group_id.0.as_str());
                let mut taken = Vec::new();
                o.topics.retain(|t| {
                    let code = if !group_ok {
                        GROUP_AUTHORIZATION_FAILED
                    } else if !self.topic_allowed(who, Action::Consume, t.name.0.as_str()) {
                        TOPIC_AUTHORIZATION_FAILED
                    } else {
                        return true;
                    };
                    let parts = t.partitions.iter().map(|p| p.partition_index).collect();
                    taken.push((t.name.clone(), parts, code));
                    false
                });
                if !taken.is_empty() || !group_ok {
                    deny_log(s, api, o.group_id.0.as_str());
                }
                let all = !group_ok || (o.topics.is_empty() && !taken.is_empty());
                groups::finish(
                    groups::Kind::Commit,
                    groups::Taken::Commit(taken),
                    all,
                    &mut r.notes,
                )
            }
            RequestKind::DescribeGroups(d) => {
                let mut taken = Vec::new();
                d.groups.retain(|g| {
                    let ok = self.group_allowed(who, Action::DescribeGroup, g.0.as_str());
                    if !ok {
                        deny_log(s, api, g.0.as_str());
                        taken.push((g.clone(), GROUP_AUTHORIZATION_FAILED));
                    }
                    ok
                });
                let all = d.groups.is_empty() && !taken.is_empty();
                groups::finish(
                    groups::Kind::Describe,
                    groups::Taken::Groups(taken),
                    all,
                    &mut r.notes,
                )
            }
            RequestKind::ListGroups(_) => RequestAction::Continue,
            RequestKind::DeleteGroups(d) => {
                let mut taken = Vec::new();
                d.groups_names.retain(|g| {
                    let ok = self.group_allowed(who, Action::DeleteGroup, g.0.as_str());
                    if !ok {
                        deny_log(s, api, g.0.as_str());
                        taken.push((g.clone(), GROUP_AUTHORIZATION_FAILED));
                    }
                    ok
                });
                let all = d.groups_names.is_empty() && !taken.is_empty();
                groups::finish(
                    groups::Kind::Delete,
                    groups::Taken::Groups(taken),
                    all,
                    &mut r.notes,
                )
            }
            RequestKind::CreateTopics(c) => {
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::CreateTopic,
                    &mut c.topics,
                    |t| &t.name,
                    |_| Vec::new(),
                );
                let all_refused = c.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = CreateTopicsResponse::default();
                    push_create_topics(&mut resp, topics);
                    ResponseKind::CreateTopics(resp)
                })
            }
            RequestKind::DeleteTopics(d) => {
                // v6+ may name topics by id only; the proxy decides on
                // names, so a nameless entry is refused.
                let mut refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::DeleteTopic,
                    &mut d.topic_names,
                    |n| n,
                    |_| Vec::new(),
                );
                let mut by_id = Vec::new();
                d.topics.retain(|t| match &t.name {
                    Some(n) if self.topic_allowed(who, Action::DeleteTopic, n.0.as_str()) => true,
                    Some(n) => {
                        deny_log(s, api, n.0.as_str());
                        refused
                            .topics
                            .push((n.clone(), Vec::new(), TOPIC_AUTHORIZATION_FAILED));
                        false
                    }
                    None => {
                        deny_log(s, api, "topic by id");
                        by_id.push(t.topic_id);
                        false
                    }
                });
                if !by_id.is_empty() {
                    // Answered here: an id-only refusal has no name to
                    // carry through the notes.
                    let mut resp = DeleteTopicsResponse::default();
                    for id in by_id {
                        resp.responses.push(
                            DeletableTopicResult::default()
                                .with_topic_id(id)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_error_message(Some(StrBytes::from_static_str(
                                    "topics must be named to be deleted through the proxy",
                                ))),
                        );
                    }
                    push_delete_topics(&mut resp, std::mem::take(&mut refused.topics));
                    if d.topic_names.is_empty() && d.topics.is_empty() {
                        return RequestAction::Respond(Box::new(ResponseKind::DeleteTopics(resp)));
                    }
                    // Mixed: refuse the whole request rather than lose the
                    // id-only entries' answers.
                    for t in d.topics.drain(..).filter_map(|t| t.name) {
                        refused
                            .topics
                            .push((t, Vec::new(), TOPIC_AUTHORIZATION_FAILED));
                    }
                    for t in d.topic_names.drain(..) {
                        refused
                            .topics
                            .push((t, Vec::new(), TOPIC_AUTHORIZATION_FAILED));
                    }
                    push_delete_topics(&mut resp, refused.topics);
                    return RequestAction::Respond(Box::new(ResponseKind::DeleteTopics(resp)));
                }
                let all_refused = d.topic_names.is_empty() && d.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = DeleteTopicsResponse::default();
                    push_delete_topics(&mut resp, topics);
                    ResponseKind::DeleteTopics(resp)
                })
            }
            RequestKind::CreatePartitions(c) => {
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::AlterTopic,
                    &mut c.topics,
                    |t| &t.name,
                    |_| Vec::new(),
                );
                let all_refused = c.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = CreatePartitionsResponse::default();
                    push_create_partitions(&mut resp, topics);
                    ResponseKind::CreatePartitions(resp)
                })
            }
            RequestKind::DeleteRecords(d) => {
                let refused = self.take_refused(
                    s,
                    who,
                    api,
                    Action::DeleteRecords,
                    &mut d.topics,
                    |t| &t.name,
                    |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                );
                let all_refused = d.topics.is_empty();
                finish(refused, all_refused, &mut r.notes, |topics| {
                    let mut resp = DeleteRecordsResponse::default();
                    push_delete_records(&mut resp, topics);
                    ResponseKind::DeleteRecords(resp)
                })
            }
            RequestKind::DescribeConfigs(d) => {
                let refused = self.take_refused_resources(
                    s,
                    who,
                    api,
                    Action::DescribeConfigs,
                    &mut d.resources,
                    |r| (r.resource_type, &r.resource_name),
                );
                let all_refused = d.resources.is_empty();
                finish(refused, all_refused, &mut r.notes, |_| {
                    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default())
                })
            }
            RequestKind::AlterConfigs(a) => {
                let refused = self.take_refused_resources(
                    s,
                    who,
                    api,
                    Action::AlterTopic,
                    &mut a.resources,
                    |r| (r.resource_type, &r.resource_name),
                );
                let all_refused = a.resources.is_empty();
                finish(refused, all_refused, &mut r.notes, |_| {
                    ResponseKind::AlterConfigs(AlterConfigsResponse::default())
                })
            }
            RequestKind::IncrementalAlterConfigs(a) => {
                let refused = self.take_refused_resources(
                    s,
                    who,
                    api,
                    Action::AlterTopic,
                    &mut a.resources,
                    |r| (r.resource_type, &r.resource_name),
                );
                let all_refused = a.resources.is_empty();
                finish(refused, all_refused, &mut r.notes, |_| {
                    ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default())
                })
            }
            RequestKind::InitProducerId(i) => {
                if let Some(id) = &i.transactional_id {
                    return self.transactional_producer(s, who, api, r.version, id.0.as_str());
                }
                if !self.cluster_allowed(who, Action::IdempotentWrite) {
                    deny_log(s, api, "cluster");
                    return self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED);
                }
                RequestAction::Continue
            }
            RequestKind::DescribeCluster(_) => {
                if self.cluster_allowed(who, Action::DescribeCluster) {
                    RequestAction::Continue
                } else {
                    deny_log(s, api, "cluster");
                    self.respond_error(api, r.version, CLUSTER_AUTHORIZATION_FAILED)
                }
            }
            _ => {
                deny_log(s, api, "api");
                RequestAction::Close(format!("{api:?} is not allowed through the proxy"))
            }
        }
    }

    /// A transactional producer's InitProducerId: refused, and recorded. A
    /// transactional id the policies do not grant (`transactional_write`)
    /// is refused as such, with the policies that decided; one they grant
    /// is refused all the same, because the proxy does not carry
    /// transactions (the broker does not offer them; they are not
    /// advertised), and the record says so.
    fn transactional_producer(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        version: i16,
        id: &str,
    ) -> RequestAction {
        deny_log(s, api, id);
        let d = self.policies.authorize(
            who,
            Action::TransactionalWrite,
            Resource::TransactionalId(id),
            &self.catalog,
        );
        self.count(Action::TransactionalWrite, d.allowed);
        if !d.allowed {
            crate::filter::audit::note_decision(TRANSACTIONAL_ID, id, false, &d.policies);
            return self.respond_error(api, version, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        crate::filter::audit::note_refusal(TRANSACTIONAL_ID, id, &[], TRANSACTIONS_UNSUPPORTED);
        self.respond_error(api, version, CLUSTER_AUTHORIZATION_FAILED)
    }

    /// Takes the topics of `topics` that `who` may not `action` out of the
    /// request, with their partitions, for their errors to be answered.
    #[allow(clippy::too_many_arguments)]
    fn take_refused<T>(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        action: Action,
        topics: &mut Vec<T>,
        name: impl Fn(&T) -> &TopicName,
        partitions: impl Fn(&T) -> Vec<i32>,
    ) -> Refused {
        let mut refused = Refused::default();
        topics.retain(|t| {
            let n = name(t);
            if self.topic_allowed(who, action, n.0.as_str()) {
                return true;
            }
            deny_log(s, api, n.0.as_str());
            refused
                .topics
                .push((n.clone(), partitions(t), TOPIC_AUTHORIZATION_FAILED));
            false
        });
        refused
    }

    fn group(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        action: Action,
        group: &str,
    ) -> RequestAction {
        if self.group_allowed(who, action, group) {
            return RequestAction::Continue;
        }
        deny_log(s, api, group);
        error_response(api, GROUP_AUTHORIZATION_FAILED)
    }

    /// Takes the config resources `who` may not `action` out of the
    /// request: topics by the topic policies, any other resource type
    /// (brokers, loggers) by `cluster_admin`.
    fn take_refused_resources<T>(
        &self,
        s: &SessionContext,
        who: &PrincipalInfo,
        api: ApiKey,
        action: Action,
        resources: &mut Vec<T>,
        key: impl Fn(&T) -> (i8, &StrBytes),
    ) -> Refused {
        let mut refused = Refused::default();
        resources.retain(|r| {
            let (kind, name) = key(r);
            let (allowed, code) = if kind == TOPIC_RESOURCE {
                (
                    self.topic_allowed(who, action, name.as_str()),
                    TOPIC_AUTHORIZATION_FAILED,
                )
            } else {
                (
                    self.cluster_allowed(who, Action::ClusterAdmin),
                    CLUSTER_AUTHORIZATION_FAILED,
                )
            };
            if !allowed {
                deny_log(s, api, name.as_str());
                refused.resources.push((kind, name.clone(), code));
            }
            allowed
        });
        refused
    }

    fn respond_error(&self, api: ApiKey, _version: i16, code: i16) -> RequestAction {
        error_response(api, code)
    }
}

/// Lets a request with refused topics go on (its errors are added to the
/// cluster's response), or answers it here when nothing of it is left.
fn finish(
    refused: Refused,
    all_refused: bool,
    notes: &mut crate::filter::Notes,
    answer: impl FnOnce(Vec<(TopicName, Vec<i32>, i16)>) -> ResponseKind,
) -> RequestAction {
    if refused.topics.is_empty() && refused.resources.is_empty() {
        return RequestAction::Continue;
    }
    if all_refused {
        let resources = refused.resources;
        let mut body = answer(refused.topics);
        merge_resources(&mut body, resources);
        return RequestAction::Respond(Box::new(body));
    }
    notes.insert(NAME, refused);
    RequestAction::Continue
}

fn push_create_topics(resp: &mut CreateTopicsResponse, topics: Vec<(TopicName, Vec<i32>, i16)>) {
    for (name, _, code) in topics {
        resp.topics.push(
            CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(code)
                .with_error_message(denied())
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        );
    }
}

fn push_delete_topics(resp: &mut DeleteTopicsResponse, topics: Vec<(TopicName, Vec<i32>, i16)>) {
    for (name, _, code) in topics {
        resp.responses.push(
            DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(code)
                .with_error_message(denied()),
        );
    }
}

fn push_create_partitions(
    resp: &mut CreatePartitionsResponse,
    topics: Vec<(TopicName, Vec<i32>, i16)>,
) {
    for (name, _, code) in topics {
        resp.results.push(
            CreatePartitionsTopicResult::default()
                .with_name(name)
                .with_error_code(code)
                .with_error_message(denied()),
        );
    }
}

fn push_delete_records(resp: &mut DeleteRecordsResponse, topics: Vec<(TopicName, Vec<i32>, i16)>) {
    for (name, parts, code) in topics {
        resp.topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|i| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(i)
                                .with_low_watermark(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                ),
        );
    }
}

/// Adds the refused config resources to a configs response.
fn merge_resources(body: &mut ResponseKind, resources: Vec<(i8, StrBytes, i16)>) {
    for (resource_type, name, code) in resources {
        match body {
            ResponseKind::DescribeConfigs(d) => d.results.push(
                DescribeConfigsResult::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(denied()),
            ),
            ResponseKind::AlterConfigs(a) => a.responses.push(
                kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(denied()),
            ),
            ResponseKind::IncrementalAlterConfigs(a) => a.responses.push(
                kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(denied()),
            ),
            _ => {}
        }
    }
}

/// A whole-request error response for the APIs that are refused as a whole.
fn error_response(api: ApiKey, code: i16) -> RequestAction {
    use kafka_protocol::messages::*;
    let body = match api {
        ApiKey::JoinGroup => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1),
        ),
        ApiKey::SyncGroup => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        ApiKey::Heartbeat => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        ApiKey::LeaveGroup => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        ApiKey::InitProducerId => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeCluster => {
            ResponseKind::DescribeCluster(DescribeClusterResponse::default().with_error_code(code))
        }
        // The other APIs carry errors per resource; refusing them wholesale
        // without echoing each resource would confuse clients, so the
        // connection is closed with a log line instead.
        _ => return RequestAction::Close(format!("{api:?} refused by policy")),
    };
    RequestAction::Respond(Box::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::api_versions::ApiVersions;
    use crate::filter::{Notes, Response, SessionContext, Target};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiVersionsResponse;

    /// In front of a cluster that offers more than the filter decides on
    /// (Apache Kafka's OffsetDelete, ACLs), those APIs are not advertised;
    /// the others are, capped where topics are named by id.
    #[tokio::test]
    async fn only_apis_with_a_decision_are_advertised() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/default");
        let policies = Arc::new(PolicyStore::load(dir).expect("shipped policies"));
        let catalog = Arc::new(Catalog::demo().expect("demo catalog"));
        let chain: Vec<Arc<dyn crate::filter::Filter>> =
            vec![Arc::new(Authz::new(policies, catalog))];
        let versions = ApiVersions::new(Vec::new(), true).with_caps(&chain);
        let offered = [
            (ApiKey::Produce, 0, 11),
            (ApiKey::OffsetFetch, 0, 9),
            (ApiKey::OffsetDelete, 0, 0),
            (ApiKey::DescribeAcls, 0, 3),
            (ApiKey::ApiVersions, 0, 4),
        ];
        let mut response = Response {
            api: ApiKey::ApiVersions,
            version: 3,
            correlation_id: 1,
            body: ResponseKind::ApiVersions(
                ApiVersionsResponse::default().with_api_keys(
                    offered
                        .iter()
                        .map(|(api, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*api as i16)
                                .with_min_version(*min)
                                .with_max_version(*max)
                        })
                        .collect(),
                ),
            ),
            notes: Notes::default(),
        };
        let session = SessionContext {
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            target: Target::Bootstrap,
            client_id: None,
            principal: None,
        };
        versions.on_response(&session, &mut response).await;
        let ResponseKind::ApiVersions(v) = &response.body else {
            panic!("not ApiVersions");
        };
        let listed: Vec<(i16, i16)> = v
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.max_version))
            .collect();
        assert!(listed.contains(&(ApiKey::Produce as i16, 9)), "{listed:?}");
        assert!(
            listed.contains(&(ApiKey::OffsetFetch as i16, 8)),
            "{listed:?}"
        );
        assert!(listed.iter().any(|(k, _)| *k == ApiKey::ApiVersions as i16));
        for gone in [ApiKey::OffsetDelete, ApiKey::DescribeAcls] {
            assert!(
                !listed.iter().any(|(k, _)| *k == gone as i16),
                "{gone:?} advertised: {listed:?}"
            );
        }
    }
}
