"""Review finding on the contact-point provisioning files (xfail until fixed).

Grafana keeps a provisioned contact point and notification policy in its database when the file that made them
is replaced: the receivers of the other choices must be deleted (`deleteContactPoints`) and `none` must reset
the policy tree (`resetPolicies`), or switching HODLBOARD_ALERT_CONTACT keeps alerting the old recipient.
"""

import pytest
import yaml

from tests.dashboard_queries import ROOT

RECEIVER_UID = {"email": "hodlboard-email", "webhook": "hodlboard-webhook"}


def contact_file(choice: str) -> dict:
    return yaml.safe_load((ROOT / "grafana" / "alerting" / f"contact-{choice}.yml").read_text())


@pytest.mark.xfail(
    strict=True,
    reason="review: switching HODLBOARD_ALERT_CONTACT leaves the previous receiver and policy in Grafana",
)
@pytest.mark.parametrize("choice", ["none", "email", "webhook"])
def test_each_contact_choice_removes_the_receivers_of_the_others(choice):
    config = contact_file(choice)
    deleted = {entry["uid"] for entry in config.get("deleteContactPoints", [])}
    others = {uid for name, uid in RECEIVER_UID.items() if name != choice}
    assert others <= deleted, f"contact-{choice}.yml leaves {sorted(others - deleted)} in Grafana"
    if choice == "none":
        assert 1 in config.get("resetPolicies", []), "the hodlboard policy would keep routing alerts"
