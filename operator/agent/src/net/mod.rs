//! Pod networking: the bridge, a veth pair and an address per Pod, published host ports, and the DNS server
//! that answers Service names.
