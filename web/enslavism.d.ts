// Type declarations of the Enslavism browser library, served by the gateway
// as /enslavism/client.d.ts. They describe both forms of the library:
// the ES module /enslavism/client.mjs (import { MasterConnection } from …)
// and the classic script /enslavism/client.js (globals MasterConnection,
// SlaveConnection and Enslavism).

/** Every message type of the browser <-> gateway protocol. */
export declare const MessageType: Readonly<{
	HELLO: 'hello';
	SLAVES: 'slaves';
	SLAVE_ADDED: 'slaveadded';
	SLAVE_UPDATED: 'slaveupdated';
	SLAVE_REMOVED: 'slaveremoved';
	ANSWER: 'answer';
	REJECTED: 'rejected';
	ICE: 'ice';
	ERROR: 'error';
	OFFER: 'offer';
	CANCEL: 'cancel';
}>;

/** The codes an EnslavismError carries: the gateway's wire codes, then the library's. */
export declare const ErrorCode: Readonly<{
	BAD_REQUEST: 'bad_request';
	NO_SUCH_SLAVE: 'no_such_slave';
	TIMEOUT: 'timeout';
	RATE_LIMITED: 'rate_limited';
	UNAUTHORIZED: 'unauthorized';
	UNAVAILABLE: 'unavailable';
	INTERNAL: 'internal';
	TOO_MANY: 'too_many';
	REJECTED: 'rejected';
	CLOSED: 'closed';
	CONNECTION_FAILED: 'connection_failed';
}>;

/** One of the values of ErrorCode. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The version of the browser <-> gateway protocol the library speaks. */
export declare const protocolVersion: number;

/** The Error every promise of the library rejects with. */
export declare class EnslavismError extends Error {
	constructor(code: ErrorCodeValue | string, message?: string);
	readonly name: 'EnslavismError';
	/** Why: rejected, no_such_slave, timeout, closed, unavailable, connection_failed, or another wire code. */
	readonly code: ErrorCodeValue | string;
}

/** Options of a MasterConnection; every field is optional. */
export interface MasterConnectionOptions {
	/** Milliseconds: bounds connect(), createDataChannel() and the gateway's hello. Default 15000. */
	connectTimeout?: number;
	/** Reconnect to the gateway when the WebSocket closes. Default true. */
	reconnect?: boolean;
	/** Milliseconds: first reconnection delay (then doubled, with jitter). Default 250. */
	minReconnectDelay?: number;
	/** Milliseconds: cap of the reconnection delay. Default 30000. */
	maxReconnectDelay?: number;
	/** Merged into every RTCPeerConnection's configuration (after the gateway's iceServers). */
	rtcConfiguration?: RTCConfiguration | null;
	/** Milliseconds: how long ping() waits for the answer once connected. Default 5000. */
	pingTimeout?: number;
}

/** A slave's load, as its presence publishes it. */
export interface SlaveLoad {
	/** Connected clients. */
	readonly clients: number;
	/** The slave's client limit, or null when unlimited. */
	readonly max: number | null;
	/** False while the slave refuses new clients (full, or shutting down). */
	readonly accepting: boolean;
}

/** Options of MasterConnection.pickSlave; every field is optional. */
export interface PickSlaveOptions {
	/** Keeps only the slaves for which it returns true, e.g. sc => sc.region === master.region. */
	filter?: (slaveCo: SlaveConnection) => boolean;
	/** 'load' (default): the least loaded, at once. 'ping': the lowest round-trip time among the probed. */
	by?: 'load' | 'ping';
	/** With by 'ping': how many of the least loaded candidates to ping in parallel. Default 3. */
	probe?: number;
}

/** What a MasterConnection's close listener receives. */
export interface MasterCloseInfo {
	code: number;
	reason: string;
	wasClean: boolean;
	/** Whether a reconnection is scheduled. */
	reconnecting: boolean;
	/** Milliseconds until the reconnection attempt (0 when not reconnecting). */
	delay: number;
}

/** The events of a MasterConnection and what their listeners receive. */
export interface MasterConnectionEventMap {
	/** A slave appeared; fired for every slave of the first list too. */
	slaveadded: SlaveConnection;
	/** A slave's userData, load or region changed. */
	slaveupdated: SlaveConnection;
	/** A slave left the list; its connection and channels were closed. */
	slaveremoved: SlaveConnection;
	/** The gateway said hello and its slave list has been applied. */
	open: MasterConnection;
	/** The WebSocket closed; see reconnecting. */
	close: MasterCloseInfo;
	/** An error from the gateway not tied to a connection attempt. */
	error: EnslavismError;
}

/** The events of a SlaveConnection and what their listeners receive. */
export interface SlaveConnectionEventMap {
	/** The peer connection to the slave is up. */
	open: SlaveConnection;
	/** The slave refused the connection; the listener gets the reason. */
	rejected: string;
	/** A started connection ended (close(), failure, slave removed). */
	close: SlaveConnection;
}

/** Options of addEventListener. */
export interface ListenerOptions {
	once?: boolean;
}

/** The connection to the gateway: keeps the slave list in sync and reconnects by itself. */
export declare class MasterConnection {
	/**
	 * @param url The gateway: ws(s) or http(s) URL, relative or absent (this page's host), or an
	 * array of them tried in turn. "/enslavism/clients" is appended unless already there.
	 */
	constructor(url?: string | URL | Array<string | URL>, options?: MasterConnectionOptions);
	/** The listed slaves. */
	readonly slaves: SlaveConnection[];
	/** The options in force. */
	readonly options: Required<MasterConnectionOptions>;
	/** The gateway WebSocket URL in use. */
	readonly url: string;
	/** The ID of the gateway that said hello last, or null. */
	readonly gateway: string | null;
	/** The region of that gateway (hello.region), or null when it has none. */
	readonly region: string | null;
	/** The ICE servers the gateway sent; used for every RTCPeerConnection. */
	readonly iceServers: RTCIceServer[];
	/** True between the open and close events. */
	readonly connected: boolean;
	addEventListener<K extends keyof MasterConnectionEventMap>(
		type: K,
		listener: (this: MasterConnection, arg: MasterConnectionEventMap[K]) => void,
		options?: ListenerOptions,
	): void;
	removeEventListener<K extends keyof MasterConnectionEventMap>(
		type: K,
		listener: (this: MasterConnection, arg: MasterConnectionEventMap[K]) => void,
	): void;
	/** Closes the gateway connection for good and every SlaveConnection. */
	close(): void;
	/**
	 * Chooses a slave among those that pass filter and do not refuse clients (load.accepting false):
	 * by 'load', the lowest clients/max, then fewest clients; by 'ping', the lowest ping() among the
	 * probe least loaded, closing the connections opened only to probe. Resolves with null when no
	 * slave is a candidate; rejects with an EnslavismError when every probe failed.
	 */
	pickSlave(options?: PickSlaveOptions): Promise<SlaveConnection | null>;
}

/** One listed slave and, once connecting, the peer connection to it. */
export declare class SlaveConnection {
	/** The MasterConnection that lists this slave. */
	readonly master: MasterConnection;
	/** The slave's ID. */
	readonly id: string;
	/** The slave's public data (any JSON value); updated on slaveupdated. */
	readonly userData: unknown;
	/** The slave's load, or null when it publishes none; updated on slaveupdated. */
	readonly load: SlaveLoad | null;
	/** Where the slave runs (its Config.Region), or null; updated on slaveupdated. */
	readonly region: string | null;
	/** new, connecting, connected, or removed (the slave left the list). */
	readonly state: 'new' | 'connecting' | 'connected' | 'removed';
	/** The peer connection to the slave, or null. */
	readonly peerConnection: RTCPeerConnection | null;
	/** Connects; resolves once connected. Idempotent: a second call returns the same promise. */
	connect(): Promise<void>;
	/** Closes the peer connection and its channels; connect() may be called again. */
	close(): void;
	/**
	 * Resolves with the round-trip time in milliseconds over the control channel, connecting first
	 * if needed (an open connection is reused and left open); rejects with an EnslavismError.
	 */
	ping(): Promise<number>;
	/**
	 * Resolves with an open RTCDataChannel on this slave's peer connection, connecting first if
	 * needed; rejects with an EnslavismError. Channels share one peer connection.
	 */
	createDataChannel(name: string, options?: RTCDataChannelInit): Promise<RTCDataChannel>;
	addEventListener<K extends keyof SlaveConnectionEventMap>(
		type: K,
		listener: (this: SlaveConnection, arg: SlaveConnectionEventMap[K]) => void,
		options?: ListenerOptions,
	): void;
	removeEventListener<K extends keyof SlaveConnectionEventMap>(
		type: K,
		listener: (this: SlaveConnection, arg: SlaveConnectionEventMap[K]) => void,
	): void;
}

type MasterConnectionClass = typeof MasterConnection;
type SlaveConnectionClass = typeof SlaveConnection;

// The globals of the classic script /enslavism/client.js.
declare global {
	var MasterConnection: MasterConnectionClass;
	var SlaveConnection: SlaveConnectionClass;
	var Enslavism: Readonly<{
		MasterConnection: typeof MasterConnection;
		SlaveConnection: typeof SlaveConnection;
		EnslavismError: typeof EnslavismError;
		MessageType: typeof MessageType;
		ErrorCode: typeof ErrorCode;
		protocolVersion: number;
	}>;
}
