// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/// @title Gasless operations authorised by EIP-712 signatures, each executable once.
/// @notice A relayer submits groups of operations; each group is signed once by its `signer`
/// (an EOA or an ERC-1271 contract). Every operation carries a 32-byte `ref` that can be consumed
/// once per signer. Refs are unordered nonces kept in a bitmap (as Permit2's): the platform hands
/// out consecutive refs, so a batch's refs share a storage word. A failing operation emits
/// `OperationFailed` and never reverts the others. See docs/adr/0001-signed-operations.md.
abstract contract SignedOperations is AccessControl, EIP712, Pausable {
    using BitMaps for BitMaps.BitMap;

    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

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
        Rejected
    }

    event OperationExecuted(bytes32 indexed ref, address indexed signer);
    event OperationFailed(bytes32 indexed ref, address indexed signer, Failure reason);

    mapping(address signer => BitMaps.BitMap) private _spentRefs;

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    /// @notice Whether `signer` has already consumed `ref` (executed or failed after authorisation).
    function refUsed(address signer, bytes32 ref) external view returns (bool) {
        return _spentRefs[signer].get(uint256(ref));
    }

    /// @dev `None` when `signature` is `signer`'s signature over the group and the deadline has not passed.
    function _authorise(address signer, bytes32 structHash, uint256 deadline, bytes calldata signature)
        internal
        view
        returns (Failure)
    {
        if (block.timestamp > deadline) return Failure.Expired;
        bytes32 digest = _hashTypedDataV4(structHash);
        if (!SignatureChecker.isValidSignatureNowCalldata(signer, digest, signature)) return Failure.Unauthorized;
        return Failure.None;
    }

    /// @dev Marks `ref` spent for `signer`; false when it already was.
    function _consumeRef(address signer, bytes32 ref) internal returns (bool) {
        BitMaps.BitMap storage spent = _spentRefs[signer];
        uint256 index = uint256(ref);
        if (spent.get(index)) return false;
        spent.set(index);
        return true;
    }

    /// @dev Emits the outcome of one operation.
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
