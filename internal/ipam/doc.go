// Package ipam is aliasnet's address allocator: pure data structures, no
// I/O, no clock, no globals, no goroutines. It works on net/netip prefixes,
// IPv4 and IPv6 alike.
//
// A [Pool] manages one range (a subnet's primary range, a named secondary
// range, a VPC vSwitch CIDR, a Kubernetes pods range...). It holds a set of
// pairwise disjoint allocated prefixes, each with a non-zero [Owner], and a
// quarantine of recently released blocks. The caller (the model) keeps the
// pools of one network disjoint, so "does X conflict with anything in the
// network" is answered by the one pool containing X.
//
// # Structure
//
// A Pool is a binary trie over the address bits below the range's prefix
// length. The node at depth d (counting from bit 0 of the address, so the
// root is at depth Range().Bits()) stands for the aligned block of prefix
// length d on its path. A node is either
//   - an allocated leaf (its block is allocated to an owner),
//   - a quarantined leaf (its block was released and is held back), or
//   - an internal node with at least one child.
//
// An absent child is a wholly free block. Empty subtrees are pruned, so
// every node holds an allocation or a quarantined block below it, and
// memory grows with the allocations (plus quarantined blocks), never with
// the number of addresses in the range: an empty pool over a /8, an IPv6
// /64 or ::/0 is the same 208-byte struct. (Bitmap allocators such as the
// Kubernetes cidrset and Cilium's allocate per address or per block of the
// range, which is what breaks them on IPv6, see kubernetes#44918 and
// cilium#20756.)
//
// Each node carries two summaries of its subtree: best, the shortest prefix
// length of a wholly free, unquarantined aligned block inside it, and bestQ,
// the same counting quarantined space as free. Allocate descends from the
// root toward the leftmost child whose best is short enough, so it finds
// the lowest-addressed fitting block in O(address bits), then creates the
// missing nodes and updates the summaries bottom-up along its path.
//
// Internal nodes also carry a free weight (their free unquarantined address
// count as a float32, in the node's otherwise unused owner field).
// AllocateRandom descends choosing each child with probability
// proportional to its weight, which makes the pick uniform over the free
// blocks in one O(address bits) descent whatever the layout (exactly so
// when no allocation is smaller than the blocks asked for; see
// AllocateRandom). Probing at random addresses degrades as the pool fills,
// and "next free block after a random point" strongly favours the block
// after a long allocated run.
//
// The pool also keeps a histogram of the maximal free aligned blocks by
// prefix length, maintained in O(1) per change of a node's "holds an
// allocation" state. FreeBlocks(bits) sums it in O(bits - Range().Bits()).
//
// Nodes live in an index arena: 16-byte, pointer-free nodes (two uint32
// child indices, a uint32 owner, sequence number or weight, three bytes)
// in 64 KiB pages, with a free list. Compared with individually allocated
// nodes linked by pointers this cuts the node from 24 to 16 bytes, gives
// the garbage collector nothing to scan (about 0 heap objects per
// allocation instead of 2 or more) and makes Clone a few page copies.
// Pages never move, so growth never copies the arena (a single growing
// slice caused multi-millisecond copies and 2x transient memory at 1M
// allocations); the first page starts at 16 nodes, so small pools stay
// small. See BenchmarkNodeLayout and bench/ipam.md.
//
// # Complexity and memory
//
// With W the address width (32 or 128) and L the range's prefix length:
// Claim, Allocate, AllocateRandom, Release, Conflict and OwnerOf cost
// O(W-L); each quarantined block drained costs O(W-L); FreeBlocks O(W-L);
// All O(nodes); Clone O(nodes); growing Resize O(W-L); shrinking Resize
// O(n·(W-L)). Operations that change free space walk the whole path to the
// root (the weights change all the way up); Release and Claim of a
// quarantined block stop as soon as a summary is unchanged.
//
// Memory is 16 bytes per node: an empty pool is 208 bytes whatever its
// range; allocations packed by first fit take about 2 nodes each (32
// B/allocation); n allocations scattered at random take about
// W-L-log2(n)+2 nodes each, because single-child chains are not
// compressed: 5.3 nodes (85 B) for 1M random /32s in a /8, but 45 nodes
// (723 B) for 1M random /128s in a /64 (see bench/ipam.md).
//
// # Quarantine
//
// Release does not make a block reusable at once. The block enters a FIFO
// quarantine (DefaultQuarantineLimit = 4096 entries per pool, see
// SetQuarantineLimit); when the FIFO is full the oldest entry drops out and
// its block becomes ordinary free space. Allocate and AllocateRandom never
// hand out a quarantined block while any other space fits; when only
// quarantined space is left they free the oldest quarantined blocks, in
// release order, until a block fits, so under exhaustion addresses are
// reused oldest-released first. Claim of a quarantined prefix (or of any
// prefix overlapping quarantined blocks) succeeds at once: the overlapping
// blocks leave the quarantine entirely. That is how a /32 moves from one VM
// to another in GCE.
//
// The policy exists because instant reuse of a just-released address hands
// it to a new workload while stale state (ARP/neighbour caches, conntrack
// entries, DNS records, a not-yet-detached interface) still points at the
// old one; amazon-vpc-cni-k8s had duplicate-IP incidents from exactly this
// (aws/amazon-vpc-cni-k8s#62, #711). It is deterministic: it depends only on
// the order of operations, never on a clock. The quarantine never causes a
// spurious ErrExhausted: Allocate fails only when no block fits with the
// quarantine counted as free, and then leaves the quarantine untouched.
//
// # Errors
//
// Methods return errors wrapping ErrExhausted, ErrNotAllocated,
// ErrOutOfRange or ErrInvalid with the range, prefix or length involved (use
// errors.Is), and *ConflictError for overlapping claims (use errors.As). A
// failed call leaves the pool unchanged.
//
// A Pool is not safe for concurrent use; callers serialise access (or work
// on a Clone).
package ipam
