//! The `Store`, `DeviceKeyStore` and `LeaseStore` ports for a backend: every method calls its query in `sql`,
//! `idempotency`, `jobs`, `events`, `device_keys` or `leases`, which run on any `Backend`. Written once here and
//! stamped out for `SqliteStore` and `PostgresStore` by `impl_store!`, so the two cannot drift apart.

macro_rules! impl_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl convene_core::Store for $backend {
            async fn insert_api_key(&self, key: &ApiKeyRecord) -> DbResult<()> {
                sql::insert_api_key(self, key).await
            }

            async fn find_api_key(&self, secret_hash: &str) -> DbResult<Option<ApiKeyRecord>> {
                sql::find_api_key(self, secret_hash).await
            }

            async fn count_api_keys(&self) -> DbResult<u64> {
                sql::count_api_keys(self).await
            }

            async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>> {
                sql::list_api_keys(self).await
            }

            async fn delete_api_key(&self, id: uuid::Uuid) -> DbResult<()> {
                sql::delete_api_key(self, id).await
            }

            async fn touch_api_key(&self, id: uuid::Uuid, at: convene_core::Timestamp) -> DbResult<()> {
                sql::touch_api_key(self, id, at).await
            }

            async fn insert_console_session(
                &self,
                session: &convene_core::store::ConsoleSessionRecord,
            ) -> DbResult<()> {
                sql::insert_console_session(self, session).await
            }

            async fn find_console_session(
                &self,
                secret_hash: &str,
                now: convene_core::Timestamp,
            ) -> DbResult<Option<ApiKeyRecord>> {
                sql::find_console_session(self, secret_hash, now).await
            }

            async fn delete_console_session(&self, secret_hash: &str) -> DbResult<()> {
                sql::delete_console_session(self, secret_hash).await
            }

            async fn insert_instance(&self, instance: &InstanceRecord) -> DbResult<()> {
                sql::insert_instance(self, instance).await
            }

            async fn get_instance(&self, id: InstanceId) -> DbResult<InstanceRecord> {
                sql::get_instance(self, id).await
            }

            async fn list_instances(&self) -> DbResult<Vec<InstanceRecord>> {
                sql::list_instances(self).await
            }

            async fn instance_phone_taken(&self, phone: &convene_core::PhoneNumber) -> DbResult<bool> {
                sql::instance_phone_taken(self, phone).await
            }

            async fn highest_instance_phone(
                &self,
                low: &convene_core::PhoneNumber,
                high: &convene_core::PhoneNumber,
            ) -> DbResult<Option<convene_core::PhoneNumber>> {
                sql::highest_instance_phone(self, low, high).await
            }

            async fn delete_instance(&self, id: InstanceId) -> DbResult<()> {
                sql::delete_instance(self, id).await
            }

            async fn set_instance_phone(&self, id: InstanceId, phone: &convene_core::PhoneNumber) -> DbResult<()> {
                sql::set_instance_phone(self, id, phone).await
            }

            async fn set_instance_token_hash(&self, id: InstanceId, token_hash: &str) -> DbResult<()> {
                sql::set_instance_token_hash(self, id, token_hash).await
            }

            async fn insert_group(&self, group: &GroupRecord) -> DbResult<()> {
                sql::insert_group(self, group).await
            }

            async fn get_group(&self, id: GroupId) -> DbResult<GroupRecord> {
                sql::get_group(self, id).await
            }

            async fn find_groups_by_jid(
                &self,
                jid: &GroupJid,
                instance_id: Option<InstanceId>,
            ) -> DbResult<Vec<GroupRecord>> {
                sql::find_groups_by_jid(self, jid, instance_id).await
            }

            async fn list_groups(&self, query: &GroupListQuery) -> DbResult<GroupPage> {
                sql::list_groups(self, query).await
            }

            fn group_listing_count(&self) -> Option<u64> {
                sql::Backend::row_caches(self).and_then(|c| c.groups.listing_count())
            }

            async fn update_group(&self, group: &GroupRecord) -> DbResult<()> {
                sql::update_group(self, group).await
            }

            // ---------- idempotency keys ----------
            async fn begin_idempotent_request(
                &self,
                record: &IdempotencyRecord,
                abandoned_before: convene_core::Timestamp,
                expired_before: convene_core::Timestamp,
            ) -> DbResult<IdempotencyClaim> {
                idempotency::begin(self, record, abandoned_before, expired_before).await
            }

            async fn complete_idempotent_request(
                &self,
                record: &IdempotencyRecord,
                response: &IdempotentResponse,
            ) -> DbResult<()> {
                idempotency::complete(self, record, response).await
            }

            async fn release_idempotent_request(&self, record: &IdempotencyRecord) -> DbResult<()> {
                idempotency::release(self, record).await
            }

            async fn delete_expired_idempotency_keys(
                &self,
                before: convene_core::Timestamp,
                limit: u32,
            ) -> DbResult<u64> {
                idempotency::delete_expired(self, before, limit).await
            }

            // ---------- instance settings, pacing and creation jobs ----------
            async fn instance_settings(&self, id: InstanceId) -> DbResult<InstanceSettings> {
                jobs::instance_settings(self, id).await
            }

            async fn put_instance_settings(&self, id: InstanceId, settings: &InstanceSettings) -> DbResult<()> {
                jobs::put_instance_settings(self, id, settings).await
            }

            async fn set_instance_pause(&self, id: InstanceId, pause: Option<&InstancePause>) -> DbResult<()> {
                jobs::set_instance_pause(self, id, pause).await
            }

            async fn instance_pause(&self, id: InstanceId) -> DbResult<Option<InstancePause>> {
                jobs::instance_pause(self, id).await
            }

            async fn insert_creation_attempt(&self, attempt: &CreationAttempt) -> DbResult<()> {
                jobs::insert_creation_attempt(self, attempt).await
            }

            async fn finish_creation_attempt(
                &self,
                id: Uuid,
                finished_at: Timestamp,
                outcome: &str,
                detail: Option<&str>,
            ) -> DbResult<()> {
                jobs::finish_creation_attempt(self, id, finished_at, outcome, detail).await
            }

            async fn creation_attempt_times(&self, id: InstanceId, since: Timestamp) -> DbResult<Vec<Timestamp>> {
                jobs::creation_attempt_times(self, id, since).await
            }

            async fn job_attempts(&self, job_id: Uuid) -> DbResult<Vec<CreationAttempt>> {
                jobs::job_attempts(self, job_id).await
            }

            async fn insert_jobs(&self, jobs: &[JobRecord]) -> DbResult<()> {
                jobs::insert_jobs(self, jobs).await
            }

            async fn get_job(&self, id: Uuid) -> DbResult<JobRecord> {
                jobs::get_job(self, id).await
            }

            async fn list_jobs(&self, query: &JobListQuery) -> DbResult<Vec<JobRecord>> {
                jobs::list_jobs(self, query).await
            }

            async fn find_duplicate_job(&self, dedupe_key: &str, since: Timestamp) -> DbResult<Option<JobRecord>> {
                jobs::find_duplicate_job(self, dedupe_key, since).await
            }

            async fn due_jobs(&self, now: Timestamp, limit: u32) -> DbResult<Vec<JobRecord>> {
                jobs::due_jobs(self, now, limit).await
            }

            async fn due_jobs_leased_by(
                &self,
                node: &str,
                leases_at: Timestamp,
                now: Timestamp,
                limit: u32,
            ) -> DbResult<Vec<JobRecord>> {
                jobs::due_jobs_leased_by(self, node, leases_at, now, limit).await
            }

            async fn next_job_due(&self) -> DbResult<Option<Timestamp>> {
                jobs::next_job_due(self).await
            }

            async fn count_jobs_by_state(&self) -> DbResult<Vec<(JobState, u64)>> {
                jobs::count_jobs_by_state(self).await
            }

            async fn list_batches(
                &self,
                before: Option<(Timestamp, Uuid)>,
                limit: u32,
            ) -> DbResult<Vec<convene_core::store::BatchSummary>> {
                jobs::list_batches(self, before, limit).await
            }

            async fn claim_job(&self, id: Uuid, instance_id: InstanceId, now: Timestamp) -> DbResult<bool> {
                jobs::claim_job(self, id, instance_id, now).await
            }

            async fn update_job(&self, job: &JobRecord) -> DbResult<()> {
                jobs::update_job(self, job).await
            }
            // ---------- events and webhook deliveries ----------
            async fn commit(
                &self,
                changes: &[convene_core::events::Change<'_>],
                events: &[convene_core::events::NewEvent],
            ) -> DbResult<()> {
                events::commit(self, changes, events).await
            }

            async fn list_events(
                &self,
                query: &convene_core::events::EventListQuery,
            ) -> DbResult<Vec<convene_core::events::EventRecord>> {
                events::list_events(self, query).await
            }

            async fn next_unacknowledged_event(
                &self,
                instance_id: InstanceId,
                since: Timestamp,
            ) -> DbResult<Option<convene_core::events::EventRecord>> {
                events::next_unacknowledged_event(self, instance_id, since).await
            }

            async fn acknowledge_event(&self, instance_id: InstanceId, seq: i64, at: Timestamp) -> DbResult<bool> {
                events::acknowledge_event(self, instance_id, seq, at).await
            }

            async fn insert_webhook_endpoint(&self, endpoint: &convene_core::events::WebhookEndpoint) -> DbResult<()> {
                events::insert_webhook_endpoint(self, endpoint).await
            }

            async fn get_webhook_endpoint(&self, id: Uuid) -> DbResult<convene_core::events::WebhookEndpoint> {
                events::get_webhook_endpoint(self, id).await
            }

            async fn list_webhook_endpoints(&self) -> DbResult<Vec<convene_core::events::WebhookEndpoint>> {
                events::list_webhook_endpoints(self).await
            }

            async fn update_webhook_endpoint(&self, endpoint: &convene_core::events::WebhookEndpoint) -> DbResult<()> {
                events::update_webhook_endpoint(self, endpoint).await
            }

            async fn delete_webhook_endpoint(&self, id: Uuid) -> DbResult<()> {
                events::delete_webhook_endpoint(self, id).await
            }

            async fn due_deliveries(
                &self,
                now: Timestamp,
                limit: u32,
            ) -> DbResult<Vec<convene_core::events::DueDelivery>> {
                events::due_deliveries(self, now, limit).await
            }

            async fn claim_due_deliveries(
                &self,
                now: Timestamp,
                limit: u32,
                claim: &str,
                until: Timestamp,
            ) -> DbResult<Vec<convene_core::events::DueDelivery>> {
                events::claim_due_deliveries(self, now, limit, claim, until).await
            }

            async fn release_delivery_claim(&self, claim: &str, until: Timestamp, now: Timestamp) -> DbResult<u64> {
                events::release_delivery_claim(self, claim, until, now).await
            }

            async fn next_delivery_due(&self) -> DbResult<Option<Timestamp>> {
                events::next_delivery_due(self).await
            }

            async fn record_delivery_attempts(
                &self,
                attempts: &[(&convene_core::events::DeliveryAttempt, &convene_core::events::AttemptOutcome)],
            ) -> DbResult<()> {
                events::record_delivery_attempts(self, attempts).await
            }

            async fn get_delivery(&self, id: i64) -> DbResult<convene_core::events::DeliveryRecord> {
                events::get_delivery(self, id).await
            }

            async fn list_deliveries(
                &self,
                query: &convene_core::events::DeliveryListQuery,
            ) -> DbResult<Vec<convene_core::events::DeliveryRecord>> {
                events::list_deliveries(self, query).await
            }

            async fn delivery_attempts(
                &self,
                delivery_id: i64,
            ) -> DbResult<Vec<convene_core::events::DeliveryAttempt>> {
                events::delivery_attempts(self, delivery_id).await
            }

            async fn replay_deliveries(
                &self,
                delivery_id: Option<i64>,
                endpoint_id: Option<Uuid>,
                since: Option<Timestamp>,
                now: Timestamp,
            ) -> DbResult<u64> {
                events::replay_deliveries(self, delivery_id, endpoint_id, since, now).await
            }

            async fn prune_events(&self, before: Timestamp, limit: u32) -> DbResult<u64> {
                events::prune_events(self, before, limit).await
            }
        }

        #[async_trait::async_trait]
        impl convene_core::DeviceKeyStore for $backend {
            async fn device_key(
                &self,
                instance: InstanceId,
                space: &str,
                scope: &str,
                key: &str,
            ) -> DbResult<Option<convene_core::DeviceKeyRow>> {
                crate::device_keys::get(self, instance, space, scope, key).await
            }

            async fn device_keys(
                &self,
                instance: InstanceId,
                space: &str,
                scope: Option<&str>,
            ) -> DbResult<Vec<convene_core::DeviceKeyRow>> {
                crate::device_keys::list(self, instance, space, scope).await
            }

            async fn write_device_keys(
                &self,
                instance: InstanceId,
                writes: Vec<convene_core::DeviceKeyWrite>,
            ) -> DbResult<()> {
                crate::device_keys::write(self, instance, writes).await
            }

            async fn delete_device_keys_numbered_up_to(
                &self,
                instance: InstanceId,
                space: &str,
                last: i64,
            ) -> DbResult<u64> {
                crate::device_keys::delete_numbered_up_to(self, instance, space, last).await
            }

            async fn forget_device_keys(&self, instance: InstanceId) -> DbResult<()> {
                crate::device_keys::forget(self, instance).await
            }
        }

        #[async_trait::async_trait]
        impl convene_core::LeaseStore for $backend {
            async fn take_lease(
                &self,
                instance: InstanceId,
                node: &str,
                now: convene_core::Timestamp,
                until: convene_core::Timestamp,
            ) -> DbResult<Option<convene_core::Lease>> {
                crate::leases::take(self, instance, node, now, until).await
            }

            async fn renew_lease(
                &self,
                lease: &convene_core::Lease,
                now: convene_core::Timestamp,
                until: convene_core::Timestamp,
            ) -> DbResult<bool> {
                crate::leases::renew(self, lease, now, until).await
            }

            async fn release_lease(&self, lease: &convene_core::Lease, now: convene_core::Timestamp) -> DbResult<()> {
                crate::leases::release(self, lease, now).await
            }

            async fn leases(&self) -> DbResult<Vec<convene_core::Lease>> {
                crate::leases::all(self).await
            }

            async fn lease_history(&self, instance: InstanceId) -> DbResult<Vec<convene_core::Lease>> {
                crate::leases::history(self, instance).await
            }

            async fn take_free_leases(
                &self,
                node: &str,
                now: convene_core::Timestamp,
                until: convene_core::Timestamp,
                limit: u32,
            ) -> DbResult<Vec<convene_core::Lease>> {
                crate::leases::take_free(self, node, now, until, limit).await
            }

            async fn renew_leases(
                &self,
                node: &str,
                now: convene_core::Timestamp,
                until: convene_core::Timestamp,
            ) -> DbResult<Vec<convene_core::Lease>> {
                crate::leases::renew_all(self, node, now, until).await
            }

            async fn node_alive(
                &self,
                node: &convene_core::ClusterNode,
                now: convene_core::Timestamp,
                until: convene_core::Timestamp,
            ) -> DbResult<bool> {
                crate::leases::node_alive(self, node, now, until).await
            }

            async fn live_nodes(&self, now: convene_core::Timestamp) -> DbResult<Vec<convene_core::ClusterNode>> {
                crate::leases::live_nodes(self, now).await
            }

            async fn lease_holder(
                &self,
                instance: InstanceId,
                now: convene_core::Timestamp,
            ) -> DbResult<Option<convene_core::ClusterNode>> {
                crate::leases::holder(self, instance, now).await
            }

            async fn leave_cluster(&self, node: &str, now: convene_core::Timestamp) -> DbResult<()> {
                crate::leases::leave(self, node, now).await
            }
        }
    };
}

pub(crate) use impl_store;
