"""Keys of the tests that run real (non-sample) cases: the public demo keys are accepted only with --sample."""

from agricredit.audit import AuditKey
from agricredit.privacy import PseudonymKey

#: Environment of a test run on a case file.
TEST_KEYS = {"AGRICREDIT_PII_KEY": "pseudonym key of the test suite", "AGRICREDIT_AUDIT_KEY": "audit key of the test suite"}
TEST_PII_KEY = PseudonymKey(TEST_KEYS["AGRICREDIT_PII_KEY"].encode(), "environment")
TEST_AUDIT_KEY = AuditKey(TEST_KEYS["AGRICREDIT_AUDIT_KEY"].encode(), "environment")
