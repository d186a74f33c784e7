// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {ERC1155Pausable} from "@openzeppelin/contracts/token/ERC1155/extensions/ERC1155Pausable.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {SignedOperations} from "./SignedOperations.sol";

/// @title A tenant's rewards and status token: ERC-1155 where each id is registered as a
/// transferable `Reward` or a locked `Status` (not transferable by holders: soulbound, ERC-5633).
/// @dev Used through EIP-1167 clones; see CreditToken for the operation model.
contract RewardsToken is ERC1155Pausable, SignedOperations, Initializable {
    enum Kind {
        Unregistered,
        Reward,
        Status
    }

    /// @dev One token movement. `from == 0` mints and `to == 0` burns; both need MINTER_ROLE, except
    /// that a holder burns its own rewards. A transfer is signed by the holder `from`.
    struct Operation {
        address from;
        address to;
        uint256 id;
        uint256 amount;
        bytes32 ref;
    }

    struct SignedGroup {
        address signer;
        Operation[] ops;
        uint256 deadline;
        bytes signature;
    }

    bytes32 public constant OPERATION_TYPEHASH =
        keccak256("Operation(address from,address to,uint256 id,uint256 amount,bytes32 ref)");
    bytes32 public constant OPERATIONS_TYPEHASH = keccak256(
        "Operations(address signer,Operation[] ops,uint256 deadline)Operation(address from,address to,uint256 id,uint256 amount,bytes32 ref)"
    );

    /// @dev Gas a receiving contract gets for its acceptance check: enough for real receivers, too little
    /// for one to starve the rest of the batch. It is guaranteed: a transaction whose gas limit could not
    /// forward it reverts instead of failing the operation.
    uint256 public constant RECEIVER_GAS = 200_000;
    bytes4 private constant _ERC5633_INTERFACE_ID = 0x911ec470; // isSoulbound(uint256)

    mapping(uint256 id => Kind) public kindOf;

    event IdRegistered(uint256 indexed id, Kind kind);
    /// @notice ERC-5633: emitted when an id is registered, `bounded` for a status id.
    event Soulbound(uint256 indexed id, bool bounded);

    error IdAlreadyRegistered(uint256 id);
    error InvalidKind();
    error StatusLocked(uint256 id);
    error OnlySelf();

    constructor(address exchangeRouter) ERC1155("") SignedOperations(exchangeRouter) {}

    function initialize(string calldata uri_, address admin, address[] calldata minters) external initializer {
        if (bytes(uri_).length != 0) _setURI(uri_);
        if (admin != address(0)) {
            _grantRole(DEFAULT_ADMIN_ROLE, admin);
            _grantRole(PAUSER_ROLE, admin);
        }
        for (uint256 i; i < minters.length; ++i) {
            _grantRole(MINTER_ROLE, minters[i]);
        }
    }

    /// @notice Registers `id` once as a reward or a status; its kind never changes.
    function registerId(uint256 id, Kind kind) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (kind == Kind.Unregistered) revert InvalidKind();
        if (kindOf[id] != Kind.Unregistered) revert IdAlreadyRegistered(id);
        kindOf[id] = kind;
        emit IdRegistered(id, kind);
        emit Soulbound(id, kind == Kind.Status);
    }

    /// @notice True for status ids: holders cannot transfer them.
    function locked(uint256 id) public view returns (bool) {
        return kindOf[id] == Kind.Status;
    }

    /// @notice ERC-5633: true for status ids, as `locked`.
    function isSoulbound(uint256 id) external view returns (bool) {
        return locked(id);
    }

    function setURI(string calldata uri_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setURI(uri_);
    }

    /// @notice Executes signed groups of operations; an invalid operation is reported by
    /// `OperationFailed` and skipped, the others go through. Only the platform's relayers may call it.
    function execute(SignedGroup[] calldata groups) external whenNotPaused nonReentrant onlyRelayer {
        bytes32 separator = DOMAIN_SEPARATOR();
        for (uint256 g; g < groups.length; ++g) {
            SignedGroup calldata group = groups[g];
            bytes32 structHash = hashOperations(group.signer, group.ops, group.deadline);
            Failure auth = _authorise(separator, group.signer, structHash, group.deadline, group.signature);
            for (uint256 i; i < group.ops.length; ++i) {
                Operation calldata op = group.ops[i];
                Failure failure = auth == Failure.None
                    ? _executeOperation(group.signer, op.from, op.to, op.id, op.amount, op.ref)
                    : auth;
                _settle(op.ref, group.signer, failure);
            }
        }
    }

    /// @notice EIP-712 struct hash of `Operations(signer, ops, deadline)`.
    function hashOperations(address signer, Operation[] calldata ops, uint256 deadline) public pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](ops.length);
        for (uint256 i; i < ops.length; ++i) {
            hashes[i] = keccak256(abi.encode(OPERATION_TYPEHASH, ops[i]));
        }
        return keccak256(abi.encode(OPERATIONS_TYPEHASH, signer, _hashArray(hashes), deadline));
    }

    /// @dev Moves tokens to a contract with the ERC-1155 acceptance check; called by this contract
    /// only, so that a rejecting receiver fails its operation alone.
    function moveToContract(address from, address to, uint256 id, uint256 amount) external {
        if (msg.sender != address(this)) revert OnlySelf();
        _updateWithAcceptanceCheck(from, to, _single(id), _single(amount), "");
    }

    function _executeOperation(address signer, address from, address to, uint256 id, uint256 amount, bytes32 ref)
        internal
        override
        returns (Failure)
    {
        Kind kind = kindOf[id];
        bool byTenant = from == address(0) || (to == address(0) && kind == Kind.Status);
        if (byTenant ? !hasRole(MINTER_ROLE, signer) : from != signer) return Failure.Unauthorized;
        if (!_consumeRef(signer, ref)) return Failure.RefUsed;
        if (amount == 0 || from == to) return Failure.Invalid;
        if (kind == Kind.Unregistered) return Failure.UnknownId;
        if (from != address(0)) {
            if (to != address(0) && kind == Kind.Status) return Failure.Locked;
            if (balanceOf(from, id) < amount) return Failure.InsufficientBalance;
        }
        // Checked here, so an overflowing balance fails this operation alone instead of panicking.
        if (to != address(0) && balanceOf(to, id) > type(uint256).max - amount) return Failure.Overflow;
        if (to.code.length == 0) {
            _update(from, to, _single(id), _single(amount));
        } else {
            try this.moveToContract{gas: RECEIVER_GAS}(from, to, id, amount) {}
            catch {
                _requireForwarded(RECEIVER_GAS);
                return Failure.Rejected;
            }
        }
        return Failure.None;
    }

    function _update(address from, address to, uint256[] memory ids, uint256[] memory values)
        internal
        override
    {
        if (from != address(0) && to != address(0)) {
            for (uint256 i; i < ids.length; ++i) {
                if (kindOf[ids[i]] == Kind.Status) revert StatusLocked(ids[i]);
            }
        }
        super._update(from, to, ids, values);
    }

    function _single(uint256 value) private pure returns (uint256[] memory array) {
        array = new uint256[](1);
        array[0] = value;
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return interfaceId == _ERC5633_INTERFACE_ID || super.supportsInterface(interfaceId);
    }

    function _domainName() internal pure override returns (string memory) {
        return "PERS Rewards";
    }
}
