package slave

// NumSessions returns the sessions the slave holds, pending or connected.
func (s *Slave) NumSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// NumOrphans returns the unknown sessions with candidates waiting.
func (s *Slave) NumOrphans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.orphans)
}

// NumPending returns the sessions not connected yet.
func (s *Slave) NumPending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}
