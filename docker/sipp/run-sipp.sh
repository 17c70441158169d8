#!/bin/sh
# Start the carrier UAS on this container's address (sipp puts it in Contact and SDP, so
# it must be the address Asterisk reaches, not 0.0.0.0). sipp's status screen goes to
# /dev/null; the scenario's <log> lines (one per call: number and what it did) and errors
# go to the container log. -nostdin: no keyboard in a container.
set -eu
ip=$(hostname -i | cut -d' ' -f1)
exec sipp -sf /sipp/carrier.xml -i "$ip" -p 5060 -mi "$ip" -mp 6000 -nostdin \
  -trace_logs -log_file /dev/stderr -trace_err -error_file /dev/stderr >/dev/null
