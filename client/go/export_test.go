package keybroker

// What the tests look at inside a Client.

// Closed reports whether the broker has closed c's connection.
func Closed(c *Client) bool {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	return cn.ended()
}

// InFlight is the number of c's requests waiting for their answer.
func InFlight(c *Client) int {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	return cn.load()
}
