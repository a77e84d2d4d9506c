"""The route table, reviewed as data: every route or auth change is a visible diff here."""

from __future__ import annotations

import subprocess
import sys

from runtime.app import route_table
from tests.conftest import PROJECT_ROOT

ROUTES = """
internal DELETE /internal/otp-bypass/{entry_id:uuid} cc_user:config.write functions.internal.otp_bypass.delete
internal GET /health none runtime.probes.health
internal GET /internal/auth/me cc_user functions.internal.auth.me
internal GET /internal/config cc_user:config.read functions.internal.config.get
internal GET /internal/config/mitra-ping cc_user:config.read functions.internal.config.mitra_ping.get
internal GET /internal/customers cc_user:customers.read functions.internal.customers.list
internal GET /internal/customers/{customer_id:uuid} cc_user:customers.read functions.internal.customers.get
internal GET /internal/dashboard cc_user:dashboard.read functions.internal.dashboard
internal GET /internal/docs none runtime.docs.docs
internal GET /internal/failed-pairings cc_user:payments.manage functions.internal.failed_pairings.list
internal GET /internal/failed-pairings/{failure_id:uuid} cc_user:payments.manage functions.internal.failed_pairings.get
internal GET /internal/metrics none runtime.probes.metrics
internal GET /internal/mitra-activity cc_user:mitras.read functions.internal.mitra_activity
internal GET /internal/mitras cc_user:mitras.read functions.internal.mitras.list
internal GET /internal/mitras/{mitra_id:uuid} cc_user:mitras.read functions.internal.mitras.get
internal GET /internal/mitras/{mitra_id:uuid}/online-logs cc_user:mitras.read functions.internal.mitras.online_logs
internal GET /internal/openapi.json none runtime.docs.openapi
internal GET /internal/otp-bypass cc_user:config.write functions.internal.otp_bypass.list
internal GET /internal/payment-requests cc_user:payments.read functions.internal.payment_requests.list
internal GET /internal/payment-requests/{request_id:uuid} cc_user:payments.read functions.internal.payment_requests.get
internal GET /internal/payments/reconciliation cc_user:payments.read functions.internal.payments.reconciliation
internal GET /internal/pricing/first-session-discount cc_user:pricing.manage functions.internal.pricing.first_session_discount.get
internal GET /internal/pricing/tiers cc_user:pricing.manage functions.internal.pricing.tiers.list
internal GET /internal/pricing/tiers/{tier_id:uuid} cc_user:pricing.manage functions.internal.pricing.tiers.get
internal GET /internal/pricing/tiers/{tier_id:uuid}/history cc_user:pricing.manage functions.internal.pricing.tiers.history
internal GET /internal/refunds cc_user:payments.read functions.internal.refunds.list
internal GET /internal/sessions cc_user:sessions.read functions.internal.sessions.list
internal GET /internal/sessions/{session_id:uuid} cc_user:sessions.read functions.internal.sessions.get
internal GET /internal/users cc_user:users.manage functions.internal.users.list
internal GET /internal/users/{user_id:uuid} cc_user:users.manage functions.internal.users.get
internal GET /internal/webhook-logs cc_user:payments.read functions.internal.webhook_logs.list
internal GET /internal/webhook-logs/{log_id:int(min=1)} cc_user:payments.read functions.internal.webhook_logs.get
internal GET /ready none runtime.probes.ready
internal PATCH /internal/config cc_user:config.write functions.internal.config.update
internal PATCH /internal/config/mitra-ping cc_user:config.write functions.internal.config.mitra_ping.update
internal PATCH /internal/failed-pairings/{failure_id:uuid} cc_user:payments.manage functions.internal.failed_pairings.update
internal PATCH /internal/mitras/{mitra_id:uuid} cc_user:mitras.manage functions.internal.mitras.update
internal PATCH /internal/mitras/{mitra_id:uuid}/status cc_user:mitras.manage functions.internal.mitras.status
internal PATCH /internal/otp-bypass cc_user:config.write functions.internal.otp_bypass.switch
internal PATCH /internal/otp-bypass/{entry_id:uuid} cc_user:config.write functions.internal.otp_bypass.update
internal PATCH /internal/pricing/first-session-discount cc_user:pricing.manage functions.internal.pricing.first_session_discount.update
internal PATCH /internal/pricing/tiers/{tier_id:uuid} cc_user:pricing.manage functions.internal.pricing.tiers.update
internal PATCH /internal/users/{user_id:uuid} cc_user:users.manage functions.internal.users.update
internal POST /internal/_test/accept-latest-pending none:dev-only functions.internal.testing.accept_latest_pending
internal POST /internal/_test/force-mitra-offline none:dev-only functions.internal.testing.force_mitra_offline
internal POST /internal/_test/force-mitra-online none:dev-only functions.internal.testing.force_mitra_online
internal POST /internal/_test/force-pairing-timeout none:dev-only functions.internal.testing.force_pairing_timeout
internal POST /internal/_test/payments/{request_id:uuid}/confirm none:dev-only functions.internal.testing.confirm_payment
internal POST /internal/_test/reset-all-mitras-online none:dev-only functions.internal.testing.reset_all_mitras_online
internal POST /internal/_test/reset-phone none:dev-only functions.internal.testing.reset_phone
internal POST /internal/_test/seed-customer none:dev-only functions.internal.testing.seed_customer
internal POST /internal/_test/seed-mitra none:dev-only functions.internal.testing.seed_mitra
internal POST /internal/auth/login none functions.internal.auth.login
internal POST /internal/auth/logout cc_user functions.internal.auth.logout
internal POST /internal/auth/password cc_user functions.internal.auth.password
internal POST /internal/auth/refresh none functions.internal.auth.refresh
internal POST /internal/customers/{customer_id:uuid}/erase cc_user:customers.manage functions.internal.customers.erase
internal POST /internal/mitras cc_user:mitras.manage functions.internal.mitras.create
internal POST /internal/otp-bypass cc_user:config.write functions.internal.otp_bypass.create
internal POST /internal/pricing/tiers cc_user:pricing.manage functions.internal.pricing.tiers.create
internal POST /internal/refunds/{refund_id:uuid}/refunded cc_user:payments.refund functions.internal.refunds.refunded
internal POST /internal/sessions/{session_id:uuid}/reroute cc_user:sessions.manage functions.internal.sessions.reroute
internal POST /internal/sessions/{session_id:uuid}/transcript cc_user:transcripts.read functions.internal.sessions.transcript
internal POST /internal/users cc_user:users.manage functions.internal.users.create
internal POST /internal/users/{user_id:uuid}/reset-password cc_user:users.manage functions.internal.users.reset_password
public DELETE /api/client/me customer functions.client.me.delete
public DELETE /api/shared/devices/fcm-token any_app_user functions.shared.devices.fcm_token.delete
public GET /api/client/chat/active customer functions.client.chat.active
public GET /api/client/chat/besties customer functions.client.chat.besties
public GET /api/client/chat/history customer functions.client.chat.history
public GET /api/client/chat/pricing customer functions.client.chat.pricing
public GET /api/client/me customer functions.client.me.get
public GET /api/client/me/export customer functions.client.me.export
public GET /api/client/mitra-availability customer functions.client.mitra_availability
public GET /api/client/payment-requests/pending customer functions.client.payment_requests.pending
public GET /api/client/payment-requests/{request_id:uuid} customer functions.client.payment_requests.get
public GET /api/mitra/chat-requests/pending mitra functions.mitra.chat_requests.pending
public GET /api/mitra/chat-requests/recent mitra functions.mitra.chat_requests.recent
public GET /api/mitra/chat-requests/{session_id:uuid}/status mitra functions.mitra.chat_requests.status
public GET /api/mitra/chat/pending mitra functions.mitra.chat.pending
public GET /api/mitra/me mitra functions.mitra.me
public GET /api/mitra/sessions/active mitra functions.mitra.sessions.active
public GET /api/mitra/sessions/history mitra functions.mitra.sessions.history
public GET /api/mitra/status mitra functions.mitra.status.get
public GET /api/shared/auth-providers none functions.shared.auth_providers
public GET /api/shared/chat/{session_id:uuid}/info any_app_user functions.shared.chat.info
public GET /api/shared/chat/{session_id:uuid}/messages any_app_user functions.shared.chat.messages.list
public GET /api/shared/config/anonymity none functions.shared.config.anonymity
public GET /api/shared/support-handles none functions.shared.support_handles
public GET /health none runtime.probes.health
public GET /ready none runtime.probes.ready
public PATCH /api/client/me customer functions.client.me.update
public PATCH /api/shared/chat/sessions/{session_id:uuid}/topic mitra functions.shared.chat.sessions.topic.update
public POST /api/client/auth/apple optional_customer functions.client.auth.apple
public POST /api/client/auth/google optional_customer functions.client.auth.google
public POST /api/client/auth/otp/request none functions.client.auth.otp.request
public POST /api/client/auth/otp/verify optional_customer functions.client.auth.otp.verify
public POST /api/client/chat/cancel customer functions.client.chat.cancel
public POST /api/client/chat/fallback-to-blast customer functions.client.chat.fallback_to_blast
public POST /api/client/chat/{session_id:uuid}/end customer functions.client.chat.end
public POST /api/client/chat/{session_id:uuid}/extensions customer functions.client.chat.extensions.create
public POST /api/client/payment-requests customer functions.client.payment_requests.create
public POST /api/client/payment-requests/{request_id:uuid}/abandon customer functions.client.payment_requests.abandon
public POST /api/client/session/{session_id:uuid}/end customer functions.client.session.end
public POST /api/client/usp-seen customer functions.client.usp_seen
public POST /api/mitra/auth/otp/request none functions.mitra.auth.otp.request
public POST /api/mitra/auth/otp/verify none functions.mitra.auth.otp.verify
public POST /api/mitra/chat-requests/sessions/{session_id:uuid}/end mitra functions.mitra.chat_requests.sessions.end
public POST /api/mitra/chat-requests/{session_id:uuid}/accept mitra functions.mitra.chat_requests.accept
public POST /api/mitra/chat-requests/{session_id:uuid}/decline mitra functions.mitra.chat_requests.decline
public POST /api/mitra/extensions/{extension_id:uuid}/respond mitra functions.mitra.extensions.respond
public POST /api/mitra/sessions/{session_id:uuid}/end mitra functions.mitra.sessions.end
public POST /api/mitra/status/heartbeat mitra functions.mitra.status.heartbeat
public POST /api/mitra/status/offline mitra functions.mitra.status.offline
public POST /api/mitra/status/online mitra functions.mitra.status.online
public POST /api/shared/auth/anonymous none functions.shared.auth.anonymous
public POST /api/shared/auth/logout any_app_user functions.shared.auth.logout
public POST /api/shared/auth/refresh none functions.shared.auth.refresh
public POST /api/shared/chat/{session_id:uuid}/closing-message any_app_user functions.shared.chat.closing_message
public POST /api/shared/chat/{session_id:uuid}/messages any_app_user functions.shared.chat.messages.create
public POST /api/shared/chat/{session_id:uuid}/read any_app_user functions.shared.chat.read
public POST /api/shared/payment/webhooks/xendit webhook functions.shared.payment.xendit_webhook
public PUT /api/shared/devices/fcm-token any_app_user functions.shared.devices.fcm_token.put
""".strip().splitlines()


def test_route_table_snapshot() -> None:
    assert route_table() == ROUTES


def test_cli_prints_the_same_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "routes"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip().splitlines() == ROUTES
