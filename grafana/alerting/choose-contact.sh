#!/bin/sh
# Grafana's entrypoint in compose: provisions the contact point that HODLBOARD_ALERT_CONTACT (.env) names, then
# starts Grafana as its image does. A value other than none, email or webhook, or a choice without its address,
# stops here with a message saying what to set (a mount named after a mistyped value would make Docker create a
# directory in its place and Grafana fail with no useful message).
set -eu
choice="${HODLBOARD_ALERT_CONTACT:-none}"
refuse() {
    echo "hodlboard: $1 (in .env), then: docker compose up -d grafana" >&2
    exit 78
}
case "$choice" in
    none) ;;
    email) [ -n "${HODLBOARD_ALERT_EMAIL:-}" ] || refuse "HODLBOARD_ALERT_CONTACT=email needs HODLBOARD_ALERT_EMAIL" ;;
    webhook) [ -n "${HODLBOARD_ALERT_WEBHOOK_URL:-}" ] || refuse "HODLBOARD_ALERT_CONTACT=webhook needs HODLBOARD_ALERT_WEBHOOK_URL" ;;
    *) refuse "HODLBOARD_ALERT_CONTACT=$choice is not a choice: set none, email or webhook" ;;
esac
# the SMTP password is a compose secret (a file, so it is no environment value in `docker inspect`); empty unless set
smtp_password_file="${HODLBOARD_SMTP_PASSWORD_FILE:-/run/secrets/grafana-smtp-password}"
if [ -s "$smtp_password_file" ]; then
    GF_SMTP_PASSWORD="$(cat "$smtp_password_file")"
    export GF_SMTP_PASSWORD
fi
# the provisioning files are mounted read-only: Grafana reads a copy that has the chosen contact point
choices="${HODLBOARD_ALERTING_DIR:-/etc/hodlboard/alerting}"
provided="${GF_PATHS_PROVISIONING:-/etc/grafana/provisioning}"
provisioning="${HODLBOARD_PROVISIONING_COPY:-/tmp/hodlboard-provisioning}"
rm -rf "$provisioning"
mkdir -p "$provisioning"
cp -R "$provided/." "$provisioning/"
mkdir -p "$provisioning/alerting"
cp "$choices/contact-$choice.yml" "$provisioning/alerting/contact-point.yml"
export GF_PATHS_PROVISIONING="$provisioning"
exec "${GRAFANA_ENTRYPOINT:-/run.sh}" "$@"
