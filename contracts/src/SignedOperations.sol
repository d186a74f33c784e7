// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IERC5267} from "@openzeppelin/contracts/interfaces/IERC5267.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/// @notice Who may submit signed operations: the platform's relayers, kept by the factory.
interface IRelayerRegistry {
    function isRelayer(address account) external view returns (bool);
}

/// @notice One leg of an atomic exchange (docs/adr/0002-atomic-exchange.md): a single operation signed
/// as `ExchangeLeg(…, bytes32 exchange)`, so it executes only inside that exchange, through the router.
/// `id` is the ERC-1155 token id (0 on an ERC-20).
struct Leg {
    address signer;
    address from;
    address to;
    uint256 id;
    uint256 amount;
    bytes32 ref;
    uint256 deadline;
    bytes signature;
}

/// @notice The strict entry the exchange router calls on each token of an exchange.
interface IExchangeLeg {
    function executeLeg(bytes32 exchange, Leg calldata leg) external;
}

/// @title Gasless operations authorised by EIP-712 signatures, each executable once.
/// @notice The platform's relayers submit groups of operations; each group is signed once by its
/// `signer` (an EOA, or an ERC-1271 contract checked within a fixed gas budget), and the signer is
/// part of what is signed. Every operation carries a 32-byte `ref` that can be consumed once per
/// signer. Refs are unordered nonces kept in a bitmap (as Permit2's): the platform hands out
/// consecutive refs, so a batch's refs share a storage word; a signer may cancel its own refs. A
/// failing operation emits `OperationFailed` and never reverts the others.
/// See docs/adr/0001-signed-operations.md.
abstract contract SignedOperations is AccessControl, Pausable, ReentrancyGuardTransient, IERC5267, IExchangeLeg {
    using BitMaps for BitMaps.BitMap;

    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice Gas an ERC-1271 signer gets for `isValidSignature`, as ERC-4337 bounds validation.
    uint256 public constant SIGNATURE_GAS = 100_000;

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    bytes32 public constant LEG_TYPEHASH = keccak256(
        "ExchangeLeg(address signer,address from,address to,uint256 id,uint256 amount,bytes32 ref,uint256 deadline,bytes32 exchange)"
    );

    /// @dev The factory that deployed the implementation: clones run the implementation's code, so
    /// every tenant contract consults the same registry and one transaction adds a relayer to all.
    IRelayerRegistry private immutable _registry;
    /// @dev The exchange router the factory deployed with the implementations: the only caller of `executeLeg`.
    address private immutable _exchangeRouter;

    /// @dev `Unauthorized` and `Expired` consume nothing (anyone can provoke them); every other
    /// failure consumes the ref, like a success.
    enum Failure {
        None,
        RefUsed,
        Unauthorized,
        Expired,
        InsufficientBalance,
        Locked,
        Invalid,
        CapExceeded,
        UnknownId,
        Rejected,
        Overflow
    }

    event OperationExecuted(bytes32 indexed ref, address indexed signer);
    event OperationFailed(bytes32 indexed ref, address indexed signer, Failure reason);
    /// @notice `signer` cancelled the refs whose bits are set in `mask`, in bitmap word `word`.
    event RefsCancelled(address indexed signer, uint256 indexed word, uint256 mask);

    error NotRelayer(address caller);
    error NotExchangeRouter(address caller);
    /// @notice An exchange leg could not execute: the whole exchange reverts, its refs stay unconsumed.
    error LegFailed(bytes32 ref, Failure reason);
    /// @dev A call was forwarded less gas than promised: the transaction's gas limit was too low.
    error InsufficientGas();

    mapping(address signer => BitMaps.BitMap) private _spentRefs;

    constructor(address exchangeRouter) {
        _registry = IRelayerRegistry(msg.sender);
        _exchangeRouter = exchangeRouter;
    }

    modifier onlyRelayer() {
        if (!_registry.isRelayer(msg.sender)) revert NotRelayer(msg.sender);
        _;
    }

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    /// @notice Whether `signer` has already consumed `ref` (executed, failed after authorisation, or cancelled).
    function refUsed(address signer, bytes32 ref) external view returns (bool) {
        return _spentRefs[signer].get(uint256(ref));
    }

    /// @notice Cancels the caller's refs `word * 256 + i` for every bit `i` set in `mask` (as Permit2's
    /// `invalidateUnorderedNonces`): a signed operation with such a ref never executes.
    function cancelRefs(uint256 word, uint256 mask) external {
        _spentRefs[msg.sender]._data[word] |= mask;
        emit RefsCancelled(msg.sender, word, mask);
    }

    /// @notice The EIP-712 domain separator of signed operations (and, on the ERC-20, of permits).
    function DOMAIN_SEPARATOR() public view virtual returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, keccak256(bytes(_domainName())), _VERSION_HASH, block.chainid, address(this)));
    }

    /// @inheritdoc IERC5267
    function eip712Domain()
        external
        view
        returns (bytes1, string memory, string memory, uint256, address, bytes32, uint256[] memory)
    {
        return (hex"0f", _domainName(), "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice Executes one leg of exchange `exchange` all or nothing: any failure reverts (`LegFailed`,
    /// or the pause), so the router's other leg is undone with it. Called by the exchange router only.
    function executeLeg(bytes32 exchange, Leg calldata leg) external whenNotPaused nonReentrant {
        if (msg.sender != _exchangeRouter) revert NotExchangeRouter(msg.sender);
        bytes32 structHash = keccak256(
            abi.encode(
                LEG_TYPEHASH, leg.signer, leg.from, leg.to, leg.id, leg.amount, leg.ref, leg.deadline, exchange
            )
        );
        Failure failure = _authorise(DOMAIN_SEPARATOR(), leg.signer, structHash, leg.deadline, leg.signature);
        if (failure == Failure.None) failure = _executeOperation(leg.signer, leg.from, leg.to, leg.id, leg.amount, leg.ref);
        if (failure != Failure.None) revert LegFailed(leg.ref, failure);
        _settle(leg.ref, leg.signer, Failure.None);
    }

    /// @dev Checks, consumes the ref of, and performs one operation authorised by `signer`.
    function _executeOperation(address signer, address from, address to, uint256 id, uint256 amount, bytes32 ref)
        internal
        virtual
        returns (Failure);

    /// @dev The EIP-712 domain name.
    function _domainName() internal view virtual returns (string memory);

    function _hashTypedData(bytes32 structHash) internal view returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(DOMAIN_SEPARATOR(), structHash);
    }

    /// @dev `None` when `signature` is `signer`'s signature over the group and the deadline has not passed.
    /// A 65-byte signature that recovers to `signer` is accepted without calling it: sound for EOAs and
    /// for EOAs delegated with EIP-7702 (their key still controls them). Otherwise an account with code is
    /// asked through ERC-1271 with at most `SIGNATURE_GAS`, so it cannot make the batch expensive.
    /// `separator` is `DOMAIN_SEPARATOR()`, computed once per batch.
    function _authorise(
        bytes32 separator,
        address signer,
        bytes32 structHash,
        uint256 deadline,
        bytes calldata signature
    ) internal view returns (Failure) {
        if (block.timestamp > deadline) return Failure.Expired;
        bytes32 digest = MessageHashUtils.toTypedDataHash(separator, structHash);
        if (signature.length == 65) {
            (address recovered, ECDSA.RecoverError error,) = ECDSA.tryRecoverCalldata(digest, signature);
            if (error == ECDSA.RecoverError.NoError && recovered == signer) return Failure.None;
        }
        if (signer.code.length == 0 || !_isValidERC1271Signature(signer, digest, signature)) {
            return Failure.Unauthorized;
        }
        return Failure.None;
    }

    /// @dev At most 32 bytes of the answer are copied, so a huge return cannot cost the caller either.
    function _isValidERC1271Signature(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        bytes memory data = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
        bool success;
        uint256 size;
        bytes32 answer;
        uint256 budget = SIGNATURE_GAS;
        assembly ("memory-safe") {
            success := staticcall(budget, signer, add(data, 0x20), mload(data), 0, 0x20)
            size := returndatasize()
            answer := mload(0)
        }
        if (!success) _requireForwarded(budget);
        return success && size >= 32 && answer == bytes32(IERC1271.isValidSignature.selector);
    }

    /// @dev After a failed call promised `budget` gas: reverts when the call could have been given less
    /// (EIP-150 leaves the caller 1/64), so a low gas limit can never pass for the callee's own failure
    /// (the check OpenZeppelin's ERC2771Forwarder does).
    function _requireForwarded(uint256 budget) internal view {
        if (gasleft() < budget / 63) revert InsufficientGas();
    }

    /// @dev Marks `ref` spent for `signer`; false when it already was.
    function _consumeRef(address signer, bytes32 ref) internal returns (bool) {
        BitMaps.BitMap storage spent = _spentRefs[signer];
        uint256 index = uint256(ref);
        if (spent.get(index)) return false;
        spent.set(index);
        return true;
    }

    /// @dev Emits the outcome of one operation, right after its movement.
    function _settle(bytes32 ref, address signer, Failure failure) internal {
        if (failure == Failure.None) emit OperationExecuted(ref, signer);
        else emit OperationFailed(ref, signer, failure);
    }

    /// @dev EIP-712 `hashStruct` of an array: keccak of the concatenated element hashes.
    function _hashArray(bytes32[] memory hashes) internal pure returns (bytes32 result) {
        assembly ("memory-safe") {
            result := keccak256(add(hashes, 0x20), mul(mload(hashes), 0x20))
        }
    }
}
