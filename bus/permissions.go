package bus

import "fmt"

// Permissions is the least a NATS user needs to play one role of the
// contract: the subjects it may publish to and subscribe to, and whether it
// may answer requests (publish to the reply subjects of messages it
// received). Give each slave and each gateway its own NATS user with these
// permissions (in nats-server's configuration, an account JWT, or
// embedded.Config.Users), and connect it with [InboxOption]'s inbox prefix so
// that it cannot read anybody else's replies.
type Permissions struct {
	Publish        []string `json:"publish"`
	Subscribe      []string `json:"subscribe"`
	AllowResponses bool     `json:"allow_responses"`
}

// InboxPrefix returns the reply inbox prefix of a user of role ("slave" or
// "gateway") and id: "_INBOX_<role>_<id>". Connect with
// nats.CustomInboxPrefix(InboxPrefix(role, id)); the permissions of
// [Subjects.SlavePermissions] and [Subjects.GatewayPermissions] allow
// subscribing under that prefix only.
func InboxPrefix(role, id string) (string, error) {
	if err := ValidateID(role); err != nil {
		return "", fmt.Errorf("role: %w", err)
	}
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("id: %w", err)
	}
	return "_INBOX_" + role + "_" + id, nil
}

// SlavePermissions returns what the slave slaveID needs: its presence key
// (put, delete, and the JetStream API calls to open or create the bucket and
// read its own key), its own subjects, candidates to any gateway, replies to
// offers, and its own inbox. It cannot write another slave's presence, read
// another slave's offers or candidates, or send offers.
func (s Subjects) SlavePermissions(slaveID string) (Permissions, error) {
	if err := s.validate("slave", slaveID); err != nil {
		return Permissions{}, err
	}
	inbox, _ := InboxPrefix("slave", slaveID)
	b := s.Bucket()
	stream := "KV_" + b
	return Permissions{
		Publish: []string{
			"$KV." + b + "." + slaveID,
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.STREAM.CREATE." + stream,
			"$JS.API.DIRECT.GET." + stream + ".$KV." + b + "." + slaveID,
			s.prefix() + ".gateway.*.session.*.ice",
		},
		Subscribe: []string{
			s.prefix() + ".slave." + slaveID + ".>",
			inbox + ".>",
		},
		AllowResponses: true,
	}, nil
}

// GatewayPermissions returns what the gateway gatewayID needs: to open or
// create the presence bucket and watch it (read-only), to send offers,
// candidates and cancels to any slave, and to receive on its own subjects
// and inbox. It cannot write presence or read another gateway's candidates.
func (s Subjects) GatewayPermissions(gatewayID string) (Permissions, error) {
	if err := s.validate("gateway", gatewayID); err != nil {
		return Permissions{}, err
	}
	inbox, _ := InboxPrefix("gateway", gatewayID)
	b := s.Bucket()
	stream := "KV_" + b
	return Permissions{
		Publish: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.STREAM.CREATE." + stream,
			"$JS.API.CONSUMER.CREATE." + stream + ".>",
			"$JS.API.CONSUMER.DELETE." + stream + ".>",
			"$JS.API.CONSUMER.INFO." + stream + ".>",
			"$JS.FC." + stream + ".>",
			s.prefix() + ".slave.*.offer",
			s.prefix() + ".slave.*.session.*.ice",
			s.prefix() + ".slave.*.session.*.cancel",
		},
		Subscribe: []string{
			s.prefix() + ".gateway." + gatewayID + ".>",
			inbox + ".>",
		},
		AllowResponses: true,
	}, nil
}
